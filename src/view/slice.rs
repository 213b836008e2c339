//! Slicing the cube into the matrix to draw, and normalising it into colour intensities.

use crate::cube::{Cube, RowAt};

use super::state::{Normalisation, Scale, StepSelection, ViewKind, ViewState};

/// One row of the matrix: which (step, variant, layer) it shows, as indexes into the cube's axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDesc {
    /// Index into `cube.steps`.
    pub step: usize,
    /// Index into `cube.variants`.
    pub variant: usize,
    /// Index into `cube.layers`.
    pub layer: usize,
    /// Index of its step group in [`Matrix::groups`].
    pub group: usize,
}

/// Consecutive rows sharing a step (one group unless `step=all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroup {
    /// Index into `cube.steps`.
    pub step: usize,
    /// First row of the group.
    pub first_row: usize,
    /// Number of rows in the group.
    pub n_rows: usize,
}

/// Image tokens laid out as a grid, and the text tokens (grid view only).
#[derive(Debug, Clone, PartialEq)]
pub struct GridModel {
    /// Rows × columns of the patch grid.
    pub rows: usize,
    pub cols: usize,
    /// Positions of the image tokens, in order (row-major in the grid).
    pub image_positions: Vec<usize>,
    /// Positions of the other tokens, in order.
    pub text_positions: Vec<usize>,
    /// Statistics of the image tokens' values.
    pub image_stats: Stats,
    /// Statistics of the text tokens' values.
    pub text_stats: Stats,
}

/// Maximum and mean of the cells that have data.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    /// Largest value (`None` when no cell has data).
    pub max: Option<f32>,
    /// Mean value (`None` when no cell has data).
    pub mean: Option<f32>,
    /// Cells with data.
    pub n_values: usize,
}

/// What is drawn: rows × positions of raw values and their colour intensities.
///
/// Built by [`Matrix::build`] (or through [`MatrixCache`]); it depends on the data fields of
/// the state only (see [`MatrixKey`]), never on the viewport, zoom or pin.
///
/// Intensities are kept before the scale is applied ([`Matrix::relative`]): the scales are
/// monotone, so the painter takes the maximum of the cells under a pixel first and applies the
/// scale once per pixel (see [`intensity_of`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// The view it was built for.
    pub view: ViewKind,
    /// Prompt index.
    pub prompt: usize,
    /// Metric index.
    pub metric: usize,
    /// Rows, top to bottom.
    pub rows: Vec<RowDesc>,
    /// Step groups of the rows.
    pub groups: Vec<RowGroup>,
    /// Columns = positions `0..n_positions` of the prompt.
    pub n_positions: usize,
    /// Values shown, row-major (`rows.len() × n_positions`): the metric, or in the heads view
    /// with `share` the ratio to `Full`. NaN = no data.
    pub values: Vec<f32>,
    /// Each cell relative to its normalisation group, before the scale: `|v| / reference` with
    /// the sign of `v` (may exceed 1 for cells left out of the reference or above a clip
    /// percentile), or for the percentile scale the fraction of the group's values `≤ v`. NaN =
    /// no data. The colour intensity is [`intensity_of`]`(scale, relative)`.
    pub relative: Vec<f32>,
    /// The scale applied to [`Matrix::relative`].
    pub scale: Scale,
    /// Per position: the largest value over the rows (NaN where no row has data).
    pub column_max: Vec<f32>,
    /// Largest reference value over the normalisation groups (data units; for the colourbar).
    pub reference_max: f32,
    /// Grid view: the image grid and text strip.
    pub grid: Option<GridModel>,
}

/// The fields of the state a [`Matrix`] depends on. Equal keys → equal matrices.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixKey {
    view: ViewKind,
    step: StepSelection,
    variant: String,
    metric: String,
    layer: Option<i64>,
    layers: Option<super::state::InclusiveRange>,
    prompt: Option<String>,
    norm: Normalisation,
    scale: Scale,
    clip_bits: Option<u32>,
    exclude0: bool,
    share: bool,
    grid: Option<super::state::GridShape>,
}

impl MatrixKey {
    /// The key of a state.
    pub fn of(state: &ViewState) -> Self {
        MatrixKey {
            view: state.view,
            step: state.step,
            variant: state.variant.clone(),
            metric: state.metric.clone(),
            layer: (state.view != ViewKind::Layers).then_some(state.layer),
            layers: (state.view == ViewKind::Layers).then_some(state.layers).flatten(),
            prompt: state.prompt.clone(),
            norm: state.norm,
            scale: state.scale,
            clip_bits: state.clip_percentile.map(f32::to_bits),
            exclude0: state.exclude0,
            share: state.share && state.view == ViewKind::Heads,
            grid: state.grid,
        }
    }
}

/// Cells (values and relative intensities) the [`MatrixCache`] keeps at most, over all its
/// matrices (8 bytes per cell: 32 MiB). The newest matrix is always kept.
pub const MATRIX_CACHE_CELLS: usize = 4 << 20;
/// Matrices the [`MatrixCache`] keeps at most.
pub const MATRIX_CACHE_ENTRIES: usize = 8;

/// Keeps recent [`Matrix`]es (least recently used dropped first, within
/// [`MATRIX_CACHE_CELLS`] and [`MATRIX_CACHE_ENTRIES`]) and the per-dataset work they share:
/// each cube row's normalisation reference (maximum, or clip percentile) and percentile ranks,
/// computed once per row and metric. Zoom, pin, hover, colour map and viewport changes repaint
/// without recomputing; going back to a recent selection reuses its matrix; a new selection
/// only slices the cube.
///
/// Call [`MatrixCache::clear`] when a new cube is loaded (a different cube is also detected
/// and clears the cache).
#[derive(Debug, Default)]
pub struct MatrixCache {
    /// Most recently used last.
    entries: Vec<(MatrixKey, Matrix)>,
    data: RowCache,
    /// Buffers of dropped matrices, reused by the next ones (no fresh pages to fault in).
    spare: Vec<Buffers>,
}

/// The large buffers of a matrix, kept for reuse.
#[derive(Debug, Default)]
struct Buffers {
    values: Vec<f32>,
    relative: Vec<f32>,
}

impl MatrixCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget everything (new cube).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.data = RowCache::default();
        self.spare.clear();
    }

    /// Per-dataset work ahead of need, a slice at a time (for idle time, e.g.
    /// `requestIdleCallback`): the percentile ranks and the row maxima of every row of the
    /// selected prompt and variant (all steps, layers and metrics), so that a later switch to
    /// the percentile scale or to another metric or step does not pay for them. Does at most
    /// `max_rows` rows per call; returns `true` once everything is ready.
    pub fn prepare(&mut self, cube: &Cube, state: &ViewState, max_rows: usize) -> bool {
        self.check_cube(cube);
        let prompt = state.prompt_index(cube);
        let Some(variant) = cube.variant_index(&state.variant) else { return true };
        if prompt >= cube.prompts.len() {
            return true;
        }
        let mut budget = max_rows;
        for metric in 0..cube.metrics.len() {
            for step in 0..cube.steps.len() {
                for layer in 0..cube.layers.len() {
                    let at = RowAt { prompt, step, variant, layer };
                    let ri = cube_row_index(cube, at);
                    let done = self.data.ranks.get(&metric).is_some_and(|s| s.n_valid.get(ri).is_some_and(|&n| n != u32::MAX));
                    if done {
                        continue;
                    }
                    if budget == 0 {
                        return false;
                    }
                    budget -= 1;
                    self.data.ensure_ranks(cube, metric, at);
                    for exclude0 in [true, false] {
                        self.data.reference(cube, metric, at, exclude0, None);
                    }
                }
            }
        }
        true
    }

    /// Forget everything when `cube` is not the cube the cache was filled from.
    fn check_cube(&mut self, cube: &Cube) {
        let id = CubeId::of(cube);
        if self.data.cube != Some(id) {
            self.clear();
            self.data.cube = Some(id);
        }
    }

    /// The matrix for `state`, rebuilt only when needed.
    pub fn get(&mut self, cube: &Cube, state: &ViewState) -> &Matrix {
        self.check_cube(cube);
        let key = MatrixKey::of(state);
        match self.entries.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                let e = self.entries.remove(i);
                self.entries.push(e);
            }
            None => {
                // Make room first, so the dropped matrix's buffers serve the new one.
                let n_new = Matrix::cells_for(cube, state);
                let mut cells: usize = self.entries.iter().map(|(_, m)| m.values.len()).sum::<usize>() + n_new;
                while !self.entries.is_empty()
                    && (cells > MATRIX_CACHE_CELLS || self.entries.len() >= MATRIX_CACHE_ENTRIES)
                {
                    let (_, old) = self.entries.remove(0);
                    cells -= old.values.len();
                    self.spare.push(Buffers { values: old.values, relative: old.relative });
                }
                // The spare buffer closest in size (at least as large when possible).
                let pick = self
                    .spare
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, b)| (b.values.capacity() < n_new, b.values.capacity().abs_diff(n_new)))
                    .map(|(i, _)| i);
                let bufs = pick.map(|i| self.spare.swap_remove(i)).unwrap_or_default();
                self.spare.truncate(2);
                let m = Matrix::build_with(cube, state, &mut self.data, bufs);
                self.entries.push((key, m));
            }
        }
        match self.entries.last() {
            Some((_, m)) => m,
            None => unreachable_matrix(),
        }
    }
}

/// Identifies a loaded cube (its metric buffers and sizes), so a cache is not used with
/// another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CubeId {
    values_addr: usize,
    n_cells: usize,
    rows_read: u64,
    n_metrics: usize,
    n_rows: usize,
    /// Hash of the source names and of 64 values spread over each metric (another cube of the
    /// same shape put at the same address still differs here).
    sample: u64,
}

impl CubeId {
    fn of(cube: &Cube) -> Self {
        // FNV-1a.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |x: u64| {
            for b in x.to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for s in &cube.sources {
            s.bytes().for_each(|b| eat(b as u64));
        }
        for m in &cube.metrics {
            let v = m.values.values();
            let step = (v.len() / 64).max(1);
            for x in v.iter().step_by(step) {
                eat(x.to_bits() as u64);
            }
        }
        CubeId {
            values_addr: cube.metrics.first().map_or(0, |m| m.values.values().as_ptr() as usize),
            n_cells: cube.n_cells(),
            rows_read: cube.rows_read,
            n_metrics: cube.metrics.len(),
            n_rows: cube_rows(cube),
            sample: h,
        }
    }
}

/// Number of rows (prompt, step, variant, layer) of a cube.
fn cube_rows(cube: &Cube) -> usize {
    cube.prompts.len() * cube.steps.len() * cube.variants.len() * cube.layers.len()
}

/// Flat index of a cube row.
fn cube_row_index(cube: &Cube, at: RowAt) -> usize {
    ((at.prompt * cube.steps.len() + at.step) * cube.variants.len() + at.variant) * cube.layers.len() + at.layer
}

/// Which reference of a cube row: metric, position 0 left out, clip percentile (bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RefKey {
    metric: usize,
    exclude0: bool,
    clip_bits: Option<u32>,
}

/// Percentile ranks of the cells of one metric, per cube row (filled on first use).
#[derive(Debug, Default)]
struct RankStore {
    /// Per cell (same layout as the metric array): number of the row's values `≤` the cell's.
    counts: Vec<u32>,
    /// Per cube row: number of values with data, `u32::MAX` = not computed yet.
    n_valid: Vec<u32>,
    /// Per cube row: the largest value (total order), over all positions / positions ≥ 1
    /// (0 when none).
    max_all: Vec<f32>,
    max_excl0: Vec<f32>,
}

/// Per-dataset work shared by matrices: references and ranks of cube rows.
#[derive(Debug, Default)]
struct RowCache {
    cube: Option<CubeId>,
    /// Reference of each cube row (NaN = not computed yet).
    refs: std::collections::HashMap<RefKey, Vec<f32>>,
    /// Percentile ranks per metric.
    ranks: std::collections::HashMap<usize, RankStore>,
    /// Scratch for clip percentiles.
    scratch: Vec<f32>,
}

impl RowCache {
    /// The normalisation reference of a cube row: the largest `|v|` (or the clip percentile of
    /// `|v|`) over its cells with data, position 0 left out with `exclude0`.
    fn reference(&mut self, cube: &Cube, metric: usize, at: RowAt, exclude0: bool, clip: Option<f32>) -> f32 {
        let n_rows = cube_rows(cube);
        let key = RefKey { metric, exclude0, clip_bits: clip.map(f32::to_bits) };
        let refs = self.refs.entry(key).or_insert_with(|| vec![f32::NAN; n_rows]);
        let i = cube_row_index(cube, at);
        if let Some(&r) = refs.get(i) {
            if !r.is_nan() {
                return r;
            }
        }
        let row = cube.row(metric, at);
        let r = group_reference(row, if exclude0 { Some(0) } else { None }, clip, &mut self.scratch);
        if let Some(slot) = refs.get_mut(i) {
            *slot = r;
        }
        r
    }

    /// Compute (once) the percentile ranks of a cube row. Returns the row's place in the rank
    /// store (`(row index, cell offset)`), `None` when the row is outside the cube's layout.
    fn ensure_ranks(&mut self, cube: &Cube, metric: usize, at: RowAt) -> Option<(usize, usize)> {
        let n_rows = cube_rows(cube);
        let n_cells = cube.n_cells();
        let store = self.ranks.entry(metric).or_insert_with(|| RankStore {
            counts: vec![0; n_cells],
            n_valid: vec![u32::MAX; n_rows],
            max_all: vec![0.0; n_rows],
            max_excl0: vec![0.0; n_rows],
        });
        let row = cube.row(metric, at);
        let n = row.len();
        let p = cube.prompts.get(at.prompt)?;
        let offset = p.cell_offset + ((at.step * cube.variants.len() + at.variant) * cube.layers.len() + at.layer) * n;
        let ri = cube_row_index(cube, at);
        let counts = store.counts.get_mut(offset..offset + n)?;
        if ri >= n_rows {
            return None;
        }
        if store.n_valid[ri] == u32::MAX {
            let (n_valid, max_all, max_excl0) = rank_counts(row, counts);
            store.n_valid[ri] = n_valid;
            store.max_all[ri] = max_all;
            store.max_excl0[ri] = max_excl0;
        }
        Some((ri, offset))
    }

    /// Percentile intensities of a cube row into `out` (same length as the row); returns the
    /// group's largest value (the percentile scale's reference).
    fn percentile_row(&mut self, cube: &Cube, metric: usize, at: RowAt, exclude0: bool, out: &mut [f32]) -> f32 {
        let row = cube.row(metric, at);
        let n = row.len();
        let Some((ri, offset)) = self.ensure_ranks(cube, metric, at) else {
            // Not a row of this cube's layout: compute directly.
            return percentile_group(row, out, if exclude0 { &[0] } else { &[] });
        };
        let Some((store, counts)) = self.ranks.get(&metric).and_then(|s| Some((s, s.counts.get(offset..offset + n)?))) else {
            return percentile_group(row, out, if exclude0 { &[0] } else { &[] });
        };
        let n_valid = store.n_valid[ri];
        if !exclude0 || n == 0 {
            let d = n_valid as f32;
            for ((o, &v), &c) in out.iter_mut().zip(row).zip(counts.iter()) {
                *o = if v.is_nan() { f32::NAN } else if n_valid == 0 { 1.0 } else { c as f32 / d };
            }
            return if n_valid == 0 { 0.0 } else { store.max_all[ri] };
        }
        // Position 0 left out of the group: one value fewer, and not counted below others.
        let v0 = row[0];
        let n_group = n_valid - u32::from(!v0.is_nan());
        let d = n_group as f32;
        for ((o, &v), &c) in out.iter_mut().zip(row).zip(counts.iter()) {
            *o = if v.is_nan() {
                f32::NAN
            } else if n_group == 0 {
                1.0
            } else {
                (c - u32::from(v0 <= v)) as f32 / d
            };
        }
        if n_group == 0 { 0.0 } else { store.max_excl0[ri] }
    }
}

#[cold]
fn unreachable_matrix() -> &'static Matrix {
    // An entry was pushed just before; this path cannot be taken. Return an empty matrix
    // rather than panicking.
    static EMPTY: std::sync::OnceLock<Matrix> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Matrix {
        view: ViewKind::Layers,
        prompt: 0,
        metric: 0,
        rows: Vec::new(),
        groups: Vec::new(),
        n_positions: 0,
        values: Vec::new(),
        relative: Vec::new(),
        scale: Scale::Linear,
        column_max: Vec::new(),
        reference_max: 0.0,
        grid: None,
    })
}

/// Whether a token text is an image token (a patch of the picture).
///
/// Matches the original grid viewer (`image_pad`, `vision_token`, `<image>`, `vision_start`, or
/// starting with `img_`), except the `<|vision_start|>` marker: in Qwen-VL files it is a single
/// delimiter before the patches (the real file has 1 `<|vision_start|>` + 256 `<|image_pad|>`),
/// and counting it would turn a 16×16 grid into 17×17.
pub fn is_image_token(text: &str) -> bool {
    text.contains("image_pad")
        || text.contains("vision_token")
        || text.contains("<image>")
        || text.starts_with("img_")
        || (text.contains("vision_start") && text != "<|vision_start|>")
}

/// Grid shape for `n` image tokens: exact square root for perfect squares, otherwise the
/// rounded-up square root for the columns and enough rows.
pub fn grid_shape(n: usize) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let mut side = (n as f64).sqrt().floor() as usize;
    while side * side < n {
        side += 1;
    }
    let cols = side;
    let rows = n.div_ceil(cols);
    (rows, cols)
}

impl Matrix {
    /// Slice and normalise. An unknown metric/variant/step in `state` gives an empty matrix
    /// (call [`ViewState::validated`] first). The page goes through [`MatrixCache::get`],
    /// which reuses per-row work across matrices.
    pub fn build(cube: &Cube, state: &ViewState) -> Matrix {
        Self::build_with(cube, state, &mut RowCache::default(), Buffers::default())
    }

    /// Number of cells of the matrix of `state` (rows × positions), without building it.
    fn cells_for(cube: &Cube, state: &ViewState) -> usize {
        let prompt = state.prompt_index(cube).min(cube.prompts.len().saturating_sub(1));
        let n = cube.prompts.get(prompt).map_or(0, |p| p.n_positions());
        let steps = match state.view {
            ViewKind::Grid => state.step_indexes(cube).len().min(1),
            _ => state.step_indexes(cube).len(),
        };
        let per_step = match state.view {
            ViewKind::Layers => cube.layers.iter().filter(|&&l| state.layers.is_none_or(|r| r.contains(l))).count(),
            ViewKind::Heads => cube.variants.len(),
            ViewKind::Grid => 1,
        };
        steps * per_step * n
    }

    fn build_with(cube: &Cube, state: &ViewState, cache: &mut RowCache, bufs: Buffers) -> Matrix {
        let prompt = state.prompt_index(cube).min(cube.prompts.len().saturating_sub(1));
        let n_positions = cube.prompts.get(prompt).map_or(0, |p| p.n_positions());
        let metric = cube.metric_index(&state.metric);
        let variant = cube.variant_index(&state.variant);
        let layer = cube.layer_index(state.layer).or(if cube.layers.is_empty() { None } else { Some(0) });
        let mut steps = state.step_indexes(cube);
        if state.view == ViewKind::Grid && steps.len() > 1 {
            // The grid shows one step: the first.
            steps.truncate(1);
        }

        let mut rows = Vec::new();
        let mut groups = Vec::new();
        if let (Some(_), Some(variant), Some(layer)) = (metric, variant, layer) {
            for (g, &step) in steps.iter().enumerate() {
                let first_row = rows.len();
                match state.view {
                    ViewKind::Layers => {
                        for (li, &lv) in cube.layers.iter().enumerate() {
                            if state.layers.is_none_or(|r| r.contains(lv)) {
                                rows.push(RowDesc { step, variant, layer: li, group: g });
                            }
                        }
                    }
                    ViewKind::Heads => {
                        for vi in 0..cube.variants.len() {
                            rows.push(RowDesc { step, variant: vi, layer, group: g });
                        }
                    }
                    ViewKind::Grid => rows.push(RowDesc { step, variant, layer, group: g }),
                }
                groups.push(RowGroup { step, first_row, n_rows: rows.len() - first_row });
            }
        }

        let metric = metric.unwrap_or(0);
        let n = n_positions;
        let n_rows = rows.len();
        let Buffers { mut values, mut relative } = bufs;
        values.clear();
        values.reserve(n_rows * n);
        let full = cube.variant_index("Full");
        // Whether the rows are the cube's rows as they are (their references can be cached).
        let share = state.view == ViewKind::Heads && state.share && full.is_some();
        for r in &rows {
            let at = RowAt { prompt, step: r.step, variant: r.variant, layer: r.layer };
            let row = cube.row(metric, at);
            match (share, full) {
                (true, Some(full)) => {
                    let full_row = cube.row(metric, RowAt { variant: full, ..at });
                    values.extend(row.iter().zip(full_row).map(|(&v, &f)| {
                        if f != 0.0 { v / f } else { f32::NAN }
                    }));
                }
                _ => values.extend_from_slice(row),
            }
        }
        let mut column_max = vec![f32::NAN; n];
        if n > 0 {
            for row in values.chunks_exact(n) {
                for (m, &v) in column_max.iter_mut().zip(row) {
                    // `f32::max` ignores NaN.
                    *m = m.max(v);
                }
            }
        }

        relative.clear();
        relative.resize(values.len(), f32::NAN);
        let scale = state.scale;
        let clip = if scale == Scale::Percentile { None } else { state.clip_percentile };
        let mut reference_max = 0.0f32;
        let mut grid = None;
        let ex = state.exclude0;
        if state.view == ViewKind::Grid {
            let p = &cube.prompts[prompt.min(cube.prompts.len().saturating_sub(1))];
            let mut image = Vec::new();
            let mut text = Vec::new();
            for pos in 0..n {
                if p.token(pos).is_some_and(is_image_token) {
                    image.push(pos);
                } else {
                    text.push(pos);
                }
            }
            let (grid_rows, grid_cols) = match state.grid {
                Some(g) => (g.rows, g.cols),
                None => grid_shape(image.len()),
            };
            if n_rows == 1 {
                // The first image token and position 0 (a text token) are left out with exclude0.
                let r1 = normalise_gathered(&values, &mut relative, &image, ex.then_some(0), scale, clip, &mut cache.scratch);
                let text0 = text.first().filter(|&&p| p == 0).map(|_| 0);
                let r2 = normalise_gathered(&values, &mut relative, &text, if ex { text0 } else { None }, scale, clip, &mut cache.scratch);
                reference_max = r1.max(r2);
            }
            let image_stats = stats(&values, image.iter().copied());
            let text_stats = stats(&values, text.iter().copied());
            grid = Some(GridModel {
                rows: grid_rows,
                cols: grid_cols,
                image_positions: image,
                text_positions: text,
                image_stats,
                text_stats,
            });
        } else if n > 0 {
            match state.norm {
                Normalisation::Row => {
                    let excluded: &[usize] = if ex { &[0] } else { &[] };
                    for ((r, vals), out) in rows.iter().zip(values.chunks_exact(n)).zip(relative.chunks_exact_mut(n)) {
                        let at = RowAt { prompt, step: r.step, variant: r.variant, layer: r.layer };
                        let rf = match (scale, share) {
                            (Scale::Percentile, false) => cache.percentile_row(cube, metric, at, ex, out),
                            (Scale::Percentile, true) => percentile_group(vals, out, excluded),
                            (_, false) => {
                                let rf = cache.reference(cube, metric, at, ex, clip);
                                apply_reference(vals, out, rf);
                                rf
                            }
                            (_, true) => {
                                let rf = group_reference(vals, excluded.first().copied(), clip, &mut cache.scratch);
                                apply_reference(vals, out, rf);
                                rf
                            }
                        };
                        reference_max = reference_max.max(rf);
                    }
                }
                Normalisation::Column => {
                    // exclude0 has nothing to exclude inside one column.
                    if scale != Scale::Percentile && clip.is_none() {
                        let mut col_ref = vec![0.0f32; n];
                        for row in values.chunks_exact(n) {
                            for (m, &v) in col_ref.iter_mut().zip(row) {
                                *m = m.max(v.abs());
                            }
                        }
                        for (vals, out) in values.chunks_exact(n).zip(relative.chunks_exact_mut(n)) {
                            for ((o, &v), &rf) in out.iter_mut().zip(vals).zip(&col_ref) {
                                *o = relative_to(v, rf);
                            }
                        }
                        reference_max = col_ref.iter().fold(0.0f32, |a, &b| a.max(b));
                    } else {
                        // Transpose so each column is contiguous, normalise, transpose back.
                        let t_vals = transpose(&values, n_rows, n);
                        let mut t_out = vec![f32::NAN; t_vals.len()];
                        for (col, out) in t_vals.chunks_exact(n_rows.max(1)).zip(t_out.chunks_exact_mut(n_rows.max(1))) {
                            let rf = if scale == Scale::Percentile {
                                percentile_group(col, out, &[])
                            } else {
                                let rf = group_reference(col, None, clip, &mut cache.scratch);
                                apply_reference(col, out, rf);
                                rf
                            };
                            reference_max = reference_max.max(rf);
                        }
                        relative = transpose(&t_out, n, n_rows);
                    }
                }
                Normalisation::Global => {
                    let excluded: Vec<usize> = if ex { (0..n_rows).map(|r| r * n).collect() } else { Vec::new() };
                    reference_max = if scale == Scale::Percentile {
                        percentile_group(&values, &mut relative, &excluded)
                    } else {
                        let rf = match (clip, share) {
                            // The largest of the rows' (cached) maxima.
                            (None, false) => rows.iter().fold(0.0f32, |a, r| {
                                let at = RowAt { prompt, step: r.step, variant: r.variant, layer: r.layer };
                                a.max(cache.reference(cube, metric, at, ex, None))
                            }),
                            _ => group_reference_many(&values, &excluded, clip, &mut cache.scratch),
                        };
                        apply_reference(&values, &mut relative, rf);
                        rf
                    };
                }
            }
        }
        Matrix {
            view: state.view,
            prompt,
            metric,
            rows,
            groups,
            n_positions,
            values,
            relative,
            scale,
            column_max,
            reference_max,
            grid,
        }
    }

    /// Raw value of a cell (NaN = no data).
    pub fn value(&self, row: usize, position: usize) -> f32 {
        if position >= self.n_positions {
            return f32::NAN;
        }
        self.values.get(row * self.n_positions + position).copied().unwrap_or(f32::NAN)
    }

    /// Colour intensity of a cell, in `[0, 1]` (`[-1, 1]` where values are negative); NaN = no
    /// data.
    pub fn intensity_at(&self, row: usize, position: usize) -> f32 {
        if position >= self.n_positions {
            return f32::NAN;
        }
        let r = self.relative.get(row * self.n_positions + position).copied().unwrap_or(f32::NAN);
        intensity_of(self.scale, r)
    }

    /// The first row showing (layer index, variant index) in the cube's axes.
    pub fn find_row(&self, layer: usize, variant: usize) -> Option<usize> {
        self.rows.iter().position(|r| r.layer == layer && r.variant == variant)
    }

    /// The `k` positions with the largest value over the rows (position 0 left out with
    /// `exclude0`), largest first, ties by position; positions without data are skipped.
    /// Uses [`Matrix::column_max`]: `O(n_positions · log k)`, no pass over the cells.
    pub fn top_positions(&self, k: usize, exclude0: bool) -> Vec<(usize, f32)> {
        let mut best: Vec<(usize, f32)> = self
            .column_max
            .iter()
            .enumerate()
            .filter(|&(p, v)| !v.is_nan() && (!exclude0 || p != 0))
            .map(|(p, &v)| (p, v))
            .collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        best.truncate(k);
        best
    }
}

/// The colour intensity of a relative value ([`Matrix::relative`]) under a scale: the scale of
/// `|r|` (clamped to 1) with the sign of `r`; NaN stays NaN. Monotone in `r`, so the maximum of
/// intensities is the intensity of the maximum.
pub fn intensity_of(scale: Scale, r: f32) -> f32 {
    if r.is_nan() {
        return f32::NAN;
    }
    apply_scale(scale, r.abs()).copysign(r)
}

fn stats(values: &[f32], idx: impl Iterator<Item = usize>) -> Stats {
    let mut max = f32::NEG_INFINITY;
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for i in idx {
        let v = values[i];
        if !v.is_nan() {
            max = max.max(v);
            sum += v as f64;
            n += 1;
        }
    }
    if n == 0 {
        Stats::default()
    } else {
        Stats { max: Some(max), mean: Some((sum / n as f64) as f32), n_values: n }
    }
}

/// The `p`-th percentile (nearest rank, `0 < p <= 100`) of `v` (reordered in place).
fn percentile_nearest_rank(v: &mut [f32], p: f32) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let rank = ((p as f64 / 100.0) * v.len() as f64).ceil() as usize;
    let k = rank.clamp(1, v.len()) - 1;
    let (_, x, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    Some(*x)
}

/// Map a relative value `r = |v| / reference` (≥ 0) through the scale (not percentile).
pub(crate) fn apply_scale(scale: Scale, r: f32) -> f32 {
    let r = r.min(1.0);
    match scale {
        Scale::Linear | Scale::Percentile => r,
        Scale::Sqrt => r.sqrt(),
        Scale::Log => (1.0 + 999.0 * r).log10() / 3.0,
    }
}

/// The reference of a group: the largest `|v|` over cells with a finite value (0 when none), or
/// with `clip` its nearest-rank percentile; cell `excluded` left out. An infinite value (a
/// distance that overflowed; a CSV may hold `inf`) is above any scale: it gets the top colour
/// and leaves the others' scale alone, where it made every non-zero cell look as large.
fn group_reference(values: &[f32], excluded: Option<usize>, clip: Option<f32>, scratch: &mut Vec<f32>) -> f32 {
    match clip {
        None => {
            let mut m = 0.0f32;
            for (i, &v) in values.iter().enumerate() {
                if Some(i) != excluded && v.is_finite() {
                    m = m.max(v.abs());
                }
            }
            m
        }
        Some(p) => {
            scratch.clear();
            scratch.extend(values.iter().enumerate().filter(|&(i, v)| Some(i) != excluded && v.is_finite()).map(|(_, v)| v.abs()));
            percentile_nearest_rank(scratch, p).unwrap_or(0.0)
        }
    }
}

/// The cells with data, as `(index, value)`, leaving out `excluded` (ascending).
fn cells_kept<'a>(values: &'a [f32], excluded: &'a [usize]) -> impl Iterator<Item = (usize, f32)> + 'a {
    let mut ex = excluded.iter().peekable();
    values.iter().enumerate().filter_map(move |(i, &v)| {
        if ex.peek() == Some(&&i) {
            ex.next();
            return None;
        }
        (!v.is_nan()).then_some((i, v))
    })
}

/// [`group_reference`] with several cells left out (`excluded` ascending).
fn group_reference_many(values: &[f32], excluded: &[usize], clip: Option<f32>, scratch: &mut Vec<f32>) -> f32 {
    scratch.clear();
    scratch.extend(cells_kept(values, excluded).filter(|(_, v)| v.is_finite()).map(|(_, v)| v.abs()));
    match clip {
        None => scratch.iter().fold(0.0f32, |a, &b| a.max(b)),
        Some(p) => percentile_nearest_rank(scratch, p).unwrap_or(0.0),
    }
}

/// A value relative to its group's reference (see [`Matrix::relative`]). Without a usable
/// reference (0: every other cell is 0 or has no data) a non-zero value counts as the maximum.
#[inline]
fn relative_to(v: f32, reference: f32) -> f32 {
    if reference > 0.0 && reference.is_finite() {
        (v.abs() / reference).copysign(v)
    } else if v.is_nan() {
        f32::NAN
    } else if v != 0.0 {
        1.0f32.copysign(v)
    } else {
        0.0
    }
}

/// `out[i] = relative_to(values[i], reference)`.
fn apply_reference(values: &[f32], out: &mut [f32], reference: f32) {
    if reference > 0.0 && reference.is_finite() {
        // NaN stays NaN.
        for (o, &v) in out.iter_mut().zip(values) {
            *o = (v.abs() / reference).copysign(v);
        }
    } else {
        for (o, &v) in out.iter_mut().zip(values) {
            *o = relative_to(v, reference);
        }
    }
}

/// Gather the cells `idx` of `values`, normalise them as one group (the `excluded`-th of them
/// left out of the reference) and scatter the result into `out`. Returns the reference.
fn normalise_gathered(
    values: &[f32],
    out: &mut [f32],
    idx: &[usize],
    excluded: Option<usize>,
    scale: Scale,
    clip: Option<f32>,
    scratch: &mut Vec<f32>,
) -> f32 {
    let group: Vec<f32> = idx.iter().map(|&i| values[i]).collect();
    let mut rel = vec![f32::NAN; group.len()];
    let rf = if scale == Scale::Percentile {
        percentile_group(&group, &mut rel, excluded.as_slice())
    } else {
        let rf = group_reference(&group, excluded, clip, scratch);
        apply_reference(&group, &mut rel, rf);
        rf
    };
    for (&i, r) in idx.iter().zip(rel) {
        out[i] = r;
    }
    rf
}

/// Sort key of an `f32` in total order (`f32::total_cmp`) as an unsigned integer.
#[inline]
fn total_order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

/// Cells with data sorted in total order, as `(key << 32) | index`.
fn sorted_keys(values: &[f32], excluded: &[usize]) -> Vec<u64> {
    let mut keys: Vec<u64> = Vec::with_capacity(values.len());
    keys.extend(cells_kept(values, excluded).map(|(i, v)| ((total_order_key(v) as u64) << 32) | i as u64));
    radix_sort_by_high_bits(&mut keys);
    keys
}

/// Sort by the high 32 bits (stable, LSD radix: three passes of 11, 11 and 10 bits), several
/// times faster than a comparison sort for the row sizes here.
fn radix_sort_by_high_bits(keys: &mut Vec<u64>) {
    if keys.len() < 64 {
        keys.sort_unstable_by_key(|k| k >> 32);
        return;
    }
    let mut tmp = vec![0u64; keys.len()];
    let mut count = [0usize; 2048];
    for shift in [32u32, 43, 54] {
        count.fill(0);
        for &k in keys.iter() {
            count[((k >> shift) & 0x7ff) as usize] += 1;
        }
        let mut sum = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &k in keys.iter() {
            let d = ((k >> shift) & 0x7ff) as usize;
            tmp[count[d]] = k;
            count[d] += 1;
        }
        std::mem::swap(keys, &mut tmp);
    }
}

/// For each cell of a row with data, the number of the row's values `≤` it (`counts`; cells
/// without data get 0). Returns the number of values with data and the largest value (total
/// order) over all positions and over positions ≥ 1 (0 when none).
fn rank_counts(values: &[f32], counts: &mut [u32]) -> (u32, f32, f32) {
    let keys = sorted_keys(values, &[]);
    counts.fill(0);
    let n = keys.len();
    let mut i = n;
    // Walk down: equal values (`==`, so -0 and +0 too) share the count of the last of them.
    let mut group_end = n;
    while i > 0 {
        i -= 1;
        let v = values[(keys[i] & 0xffff_ffff) as usize];
        if i + 1 < n && values[(keys[i + 1] & 0xffff_ffff) as usize] != v {
            group_end = i + 1;
        }
        counts[(keys[i] & 0xffff_ffff) as usize] = group_end as u32;
    }
    let max_all = keys.last().map_or(0.0, |&k| values[(k & 0xffff_ffff) as usize]);
    let max_excl0 = keys.iter().rev().find(|&&k| k & 0xffff_ffff != 0).map_or(0.0, |&k| values[(k & 0xffff_ffff) as usize]);
    (n as u32, max_all, max_excl0)
}

/// Percentile intensities of one group: for each cell with data, the fraction of the group's
/// values (cells `excluded`, ascending, left out) that are `≤` it; 1 when the group has no
/// values. Returns the group's largest value (0 when none).
fn percentile_group(values: &[f32], out: &mut [f32], excluded: &[usize]) -> f32 {
    let keys = sorted_keys(values, excluded);
    let n = keys.len();
    let d = n as f32;
    let at = |k: u64| values[(k & 0xffff_ffff) as usize];
    let mut group_end = n;
    let mut i = n;
    while i > 0 {
        i -= 1;
        let v = at(keys[i]);
        if i + 1 < n && at(keys[i + 1]) != v {
            group_end = i + 1;
        }
        out[(keys[i] & 0xffff_ffff) as usize] = group_end as f32 / d;
    }
    for &e in excluded {
        let v = values[e];
        out[e] = if v.is_nan() {
            f32::NAN
        } else if n == 0 {
            1.0
        } else {
            keys.partition_point(|&k| at(k) <= v) as f32 / d
        };
    }
    for (o, &v) in out.iter_mut().zip(values) {
        if v.is_nan() {
            *o = f32::NAN;
        }
    }
    keys.last().map_or(0.0, |&k| at(k))
}

/// Transpose a row-major `rows × cols` matrix (blocked, cache-friendly).
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![f32::NAN; a.len()];
    const B: usize = 32;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    t[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
    t
}
