//! What one repaint costs natively, per view change, doing exactly what the page does for a frame
//! (`src/web/page.rs`, `App::frame`): `MatrixCache::get` (slice + normalise, only when the data
//! keys change), `Layout::compute`, `render::paint` into a reused raster, `Layout::labels`, and
//! the top-k panel's scan when the matrix key changes (the page's `fill_topk`, mirrored here
//! without the DOM). Canvas: 800×450 CSS px at DPR 2 (1600×900 device px) unless `--size
//! WxH@DPR` is given.
//!
//! ```text
//! cargo build --profile quick --example paint_timings
//! target/quick/examples/paint_timings [--real FILE] [--only NAME] [--size 800x450@2] [--repeat N]
//! ```
//!
//! Datasets: `real-size` (synthetic 2 steps × 36 layers × 1053 positions × 34 variants, 2.6M
//! rows), `seed-scale` (50 × 36 × 1053 × 2, 3.8M rows; its sequence starts from `step=all`,
//! 1800 rows × 1053 columns) and, with `--real`, the given file. Each view change is timed the
//! first time it is seen (`first`, empty caches) and when the same selection comes back
//! (`again`), each the median over `--repeat` runs of the whole sequence. Times are the thread's
//! CPU time (the machine's cores are shared).
use std::time::{Duration, Instant};

/// CPU time of this thread: unlike wall-clock time it does not count the time other processes
/// hold the (shared) cores.
#[derive(Clone, Copy)]
struct Clock(Duration);

impl Clock {
    fn now() -> Clock {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid timespec to write into; the clock id is a constant.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Clock(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }

    fn elapsed(&self) -> Duration {
        Clock::now().0.saturating_sub(self.0)
    }
}

use mask_impact::cube::Cube;
use mask_impact::render::{self, Raster};
use mask_impact::synth::{self, SynthConfig};
use mask_impact::view::{
    pan, zoom_about, ColourMap, InclusiveRange, Layout, MatrixCache, MatrixKey, Normalisation,
    Scale, StepSelection, ViewKind, ViewState, Viewport,
};

type Change = (&'static str, fn(&ViewState, &Cube) -> ViewState);

/// The view changes timed, applied in order (each to the previous state).
fn changes(step_all: bool) -> Vec<Change> {
    fn with(s: &ViewState, f: impl FnOnce(&mut ViewState)) -> ViewState {
        let mut t = s.clone();
        f(&mut t);
        t
    }
    fn zoom(s: &ViewState, c: &Cube, factor: f64) -> ViewState {
        let n = c.prompts.first().map_or(0, |p| p.n_positions());
        with(s, |t| t.zoom = zoom_about(s.zoom, n, n as f64 * 0.4, factor))
    }
    let steps: Vec<Change> = if step_all {
        vec![
            ("step ↓ (one step)", |s, c| s.shift_step(c, 1)),
            ("step all", |s, _| with(s, |t| t.step = StepSelection::All)),
        ]
    } else {
        vec![("step ↓", |s, c| s.shift_step(c, 1)), ("step ↑", |s, c| s.shift_step(c, -1))]
    };
    let rest: Vec<Change> = vec![
        ("variant V", |s, c| s.next_variant(c)),
        ("variant V", |s, c| s.next_variant(c)),
        ("metric M", |s, c| s.next_metric(c)),
        ("metric M", |s, c| s.next_metric(c)),
        ("norm column", |s, _| with(s, |t| t.norm = Normalisation::Column)),
        ("norm global", |s, _| with(s, |t| t.norm = Normalisation::Global)),
        ("norm row", |s, _| with(s, |t| t.norm = Normalisation::Row)),
        ("exclude0 off", |s, _| with(s, |t| t.exclude0 = false)),
        ("exclude0 on", |s, _| with(s, |t| t.exclude0 = true)),
        ("scale sqrt", |s, _| with(s, |t| t.scale = Scale::Sqrt)),
        ("scale log", |s, _| with(s, |t| t.scale = Scale::Log)),
        ("scale percentile", |s, _| with(s, |t| t.scale = Scale::Percentile)),
        ("scale linear", |s, _| with(s, |t| t.scale = Scale::Linear)),
        ("clip p99", |s, _| with(s, |t| t.clip_percentile = Some(99.0))),
        ("clip off", |s, _| with(s, |t| t.clip_percentile = None)),
        ("cmap viridis", |s, _| with(s, |t| t.cmap = ColourMap::Viridis)),
        ("cmap reds", |s, _| with(s, |t| t.cmap = ColourMap::Reds)),
        ("zoom in", |s, c| zoom(s, c, 0.8)),
        ("zoom in", |s, c| zoom(s, c, 0.5)),
        ("zoom in", |s, c| zoom(s, c, 0.1)),
        ("pan", |s, c| with(s, |t| t.zoom = pan(s.zoom, c.prompts[0].n_positions(), 7.0))),
        ("values on", |s, _| with(s, |t| t.values = true)),
        ("zoom fit", |s, _| with(s, |t| {
            t.zoom = None;
            t.values = false;
        })),
        ("pin 5", |s, _| with(s, |t| t.pin = Some(5))),
        ("heatmap off", |s, _| with(s, |t| t.heatmap = false)),
        ("heatmap on", |s, _| with(s, |t| t.heatmap = true)),
        ("view heads", |s, _| with(s, |t| t.view = ViewKind::Heads)),
        ("heads share", |s, _| with(s, |t| t.share = true)),
        ("layer →", |s, c| s.shift_layer(c, 1)),
        ("view grid", |s, _| with(s, |t| {
            t.view = ViewKind::Grid;
            t.share = false;
        })),
        ("layer →", |s, c| s.shift_layer(c, 1)),
        ("view layers", |s, _| with(s, |t| t.view = ViewKind::Layers)),
    ];
    steps.into_iter().chain(rest).collect()
}

#[derive(Default, Clone, Copy)]
struct Frame {
    matrix: Duration,
    layout: Duration,
    paint: Duration,
    labels: Duration,
    topk: Duration,
    /// The top-k panel through `Matrix::top_positions` (what the page would spend after the
    /// change described in the report).
    topk_new: Duration,
}

impl Frame {
    /// The frame as the page does it now (top-k scan in page.rs).
    fn total(&self) -> Duration {
        self.matrix + self.layout + self.paint + self.labels + self.topk
    }

    /// The frame with the page's top-k from `Matrix::top_positions`.
    fn total_new(&self) -> Duration {
        self.matrix + self.layout + self.paint + self.labels + self.topk_new
    }
}

struct Page {
    cache: MatrixCache,
    raster: Raster,
    topk_key: Option<MatrixKey>,
    viewport: Viewport,
    /// Keeps the optimiser from dropping work whose result is otherwise unused.
    sink: usize,
}

impl Page {
    fn frame(&mut self, cube: &Cube, state: &ViewState) -> Frame {
        let mut f = Frame::default();
        let t = Clock::now();
        let matrix = self.cache.get(cube, state);
        f.matrix = t.elapsed();
        let t = Clock::now();
        let layout = Layout::compute(self.viewport, cube, matrix, state);
        f.layout = t.elapsed();
        let t = Clock::now();
        render::paint(cube, matrix, &layout, state, &mut self.raster);
        f.paint = t.elapsed();
        let t = Clock::now();
        let labels = layout.labels(cube, matrix, state);
        f.labels = t.elapsed();
        self.sink = self.sink.wrapping_add(labels.len()).wrapping_add(self.raster.rgba[self.raster.rgba.len() / 2] as usize);
        let key = MatrixKey::of(state);
        if self.topk_key.as_ref() != Some(&key) {
            let t = Clock::now();
            let old = page_topk(matrix, state);
            f.topk = t.elapsed();
            let t = Clock::now();
            let new = matrix.top_positions(10, state.exclude0);
            f.topk_new = t.elapsed();
            assert_eq!(old, new, "Matrix::top_positions differs from the page's scan");
            self.sink = self.sink.wrapping_add(old.len() + new.len());
            self.topk_key = Some(key);
        }
        f
    }
}

/// The page's `fill_topk` scan (src/web/page.rs), without the DOM: the 10 positions with the
/// largest value over the matrix rows.
fn page_topk(matrix: &mask_impact::view::Matrix, state: &ViewState) -> Vec<(usize, f32)> {
    let n = matrix.n_positions;
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(n);
    for p in 0..n {
        if state.exclude0 && p == 0 {
            continue;
        }
        let mut m = f32::NAN;
        for r in 0..matrix.rows.len() {
            let v = matrix.value(r, p);
            if !v.is_nan() && (m.is_nan() || v > m) {
                m = v;
            }
        }
        if !m.is_nan() {
            best.push((p, m));
        }
    }
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    best.truncate(10);
    best
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn run(name: &str, cube: &Cube, start: ViewState, viewport: Viewport, repeat: usize) {
    let (w, h) = viewport.device_size();
    println!(
        "\n## {name}: {} rows · {} steps × {} layers × {} positions × {} variants · canvas {w}×{h} device px (DPR {})",
        cube.rows_read,
        cube.steps.len(),
        cube.layers.len(),
        cube.prompts.first().map_or(0, |p| p.n_positions()),
        cube.variants.len(),
        viewport.device_pixel_ratio
    );
    let changes = changes(start.step == StepSelection::All);
    let mut states = vec![start.clone()];
    for (_, f) in &changes {
        let next = f(states.last().unwrap_or(&start), cube);
        states.push(next);
    }
    // Each repeat: a fresh page (empty caches), the load frame, every change once (`first`),
    // then every change again (`again`: the same selections revisited).
    let mut loads = Vec::new();
    let mut firsts: Vec<Vec<Frame>> = vec![Vec::new(); changes.len()];
    let mut agains: Vec<Vec<Frame>> = vec![Vec::new(); changes.len()];
    let mut sink = 0usize;
    let mut rows = vec![0usize; changes.len()];
    for _ in 0..repeat {
        let mut page = Page { cache: MatrixCache::new(), raster: Raster::default(), topk_key: None, viewport, sink: 0 };
        loads.push(page.frame(cube, &states[0]));
        for (i, s) in states[1..].iter().enumerate() {
            firsts[i].push(page.frame(cube, s));
        }
        page.frame(cube, &states[0]);
        for (i, s) in states[1..].iter().enumerate() {
            agains[i].push(page.frame(cube, s));
            rows[i] = page.cache.get(cube, s).rows.len();
        }
        sink = sink.wrapping_add(page.sink);
    }
    let load = median(loads.iter().map(Frame::total).collect());
    println!("load frame: {:.2} ms (median of {repeat}; thread CPU time)", ms(load));
    // Idle-time work the page can do after the load (`MatrixCache::prepare`), in slices of 64
    // rows, and the percentile view afterwards.
    let mut page = Page { cache: MatrixCache::new(), raster: Raster::default(), topk_key: None, viewport, sink: 0 };
    page.frame(cube, &states[0]);
    let t = Clock::now();
    let mut slices = 0;
    let mut worst_slice = Duration::ZERO;
    loop {
        let ts = Clock::now();
        let done = page.cache.prepare(cube, &states[0], 64);
        worst_slice = worst_slice.max(ts.elapsed());
        slices += 1;
        if done {
            break;
        }
    }
    let prepared = t.elapsed();
    let pct = ViewState { scale: mask_impact::view::Scale::Percentile, ..states[0].clone() };
    let f = page.frame(cube, &pct);
    println!(
        "prepare (idle time): {:.2} ms in {slices} slices of 64 rows (longest {:.2} ms); then scale percentile: {:.2} ms ({:.2} ms with top_positions)",
        ms(prepared),
        ms(worst_slice),
        ms(f.total()),
        ms(f.total_new())
    );
    println!(
        "| view change | rows | first ms | again ms | again: matrix / layout / paint / labels / top-k scan ms | first / again ms with `top_positions` |"
    );
    println!("|---|---:|---:|---:|---|---|");
    let mut worst = [Duration::ZERO; 4];
    for (i, (label, _)) in changes.iter().enumerate() {
        let s = &states[i + 1];
        let med = |v: &[Frame], f: fn(&Frame) -> Duration| median(v.iter().map(f).collect());
        let first = med(&firsts[i], Frame::total);
        let again = med(&agains[i], Frame::total);
        let first_new = med(&firsts[i], Frame::total_new);
        let again_new = med(&agains[i], Frame::total_new);
        for (w, v) in worst.iter_mut().zip([first, again, first_new, again_new]) {
            *w = (*w).max(v);
        }
        let step = match s.step {
            StepSelection::All => "all".to_string(),
            StepSelection::One(n) => n.to_string(),
        };
        let part = |f: fn(&Frame) -> Duration| ms(med(&agains[i], f));
        println!(
            "| {label} ({} step={step}) | {} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} / {:.2} / {:.2} | {:.2} / {:.2} |",
            s.view.as_str(),
            rows[i],
            ms(first),
            ms(again),
            part(|f| f.matrix),
            part(|f| f.layout),
            part(|f| f.paint),
            part(|f| f.labels),
            part(|f| f.topk),
            ms(first_new),
            ms(again_new),
        );
    }
    println!(
        "worst: first {:.2} ms · again {:.2} ms · with top_positions: first {:.2} ms · again {:.2} ms (sink {})",
        ms(worst[0]),
        ms(worst[1]),
        ms(worst[2]),
        ms(worst[3]),
        sink % 10
    );
}

fn parse_size(s: &str) -> Option<Viewport> {
    let (wh, dpr) = s.split_once('@').unwrap_or((s, "1"));
    let (w, h) = wh.split_once('x')?;
    Some(Viewport::new(w.parse().ok()?, h.parse().ok()?, dpr.parse().ok()?))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut real: Option<String> = None;
    let mut only: Option<String> = None;
    let mut viewport = Viewport::new(800.0, 450.0, 2.0);
    let mut repeat = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--real" => real = args.next(),
            "--only" => only = args.next(),
            "--size" => viewport = args.next().as_deref().and_then(parse_size).ok_or("--size WxH@DPR")?,
            "--repeat" => repeat = args.next().and_then(|r| r.parse().ok()).ok_or("--repeat N")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if let Some(path) = &real {
        if wanted("real-file") {
            let t = Instant::now();
            let cube = mask_impact::ingest::read_path(std::path::Path::new(path))?;
            println!("read {path} in {:.0} ms", ms(t.elapsed()));
            let s = ViewState::for_cube(&cube);
            run("real-file", &cube, s.clone(), viewport, repeat);
            run("real-file step=all", &cube, ViewState { step: StepSelection::All, ..s }, viewport, repeat);
        }
    }
    if wanted("real-size") {
        let config = SynthConfig { steps: 2, layers: 36, positions: 1053, heads: 32, image_grid: Some((32, 32)), ..SynthConfig::seed_scale() };
        let cube = synth::cube(config, "real-size.parquet")?;
        let s = ViewState::for_cube(&cube);
        run("real-size", &cube, s.clone(), viewport, repeat);
        run("real-size step=all", &cube, ViewState { step: StepSelection::All, ..s }, viewport, repeat);
    }
    if wanted("seed-scale") {
        let cube = synth::cube(SynthConfig::seed_scale(), "seed-scale.parquet")?;
        let s = ViewState::for_cube(&cube);
        run("seed-scale step=all", &cube, ViewState { step: StepSelection::All, ..s.clone() }, viewport, repeat);
        run(
            "seed-scale step=all, layers 10-20",
            &cube,
            ViewState { step: StepSelection::All, layers: Some(InclusiveRange { first: 10, last: 20 }), ..s.clone() },
            viewport,
            repeat,
        );
        run("seed-scale one step", &cube, s, viewport, repeat);
    }
    Ok(())
}
