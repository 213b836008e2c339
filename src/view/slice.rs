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
    /// Colour intensity of each cell, in `[0, 1]` (`[-1, 1]` where values are negative), NaN =
    /// no data.
    pub intensity: Vec<f32>,
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

/// Keeps the last [`Matrix`] and rebuilds it only when its [`MatrixKey`] changes: zoom, pin,
/// hover, colour map, viewport changes repaint without recomputing. Call [`MatrixCache::clear`]
/// when a new cube is loaded.
#[derive(Debug, Default)]
pub struct MatrixCache {
    entry: Option<(MatrixKey, Matrix)>,
}

impl MatrixCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget the cached matrix (new cube).
    pub fn clear(&mut self) {
        self.entry = None;
    }

    /// The matrix for `state`, rebuilt only when needed.
    pub fn get(&mut self, cube: &Cube, state: &ViewState) -> &Matrix {
        let key = MatrixKey::of(state);
        let stale = self.entry.as_ref().is_none_or(|(k, _)| *k != key);
        if stale {
            self.entry = Some((key, Matrix::build(cube, state)));
        }
        match &self.entry {
            Some((_, m)) => m,
            None => unreachable_matrix(),
        }
    }
}

#[cold]
fn unreachable_matrix() -> &'static Matrix {
    // `entry` was set just above; this path cannot be taken. Return an empty matrix rather than
    // panicking.
    static EMPTY: std::sync::OnceLock<Matrix> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Matrix {
        view: ViewKind::Layers,
        prompt: 0,
        metric: 0,
        rows: Vec::new(),
        groups: Vec::new(),
        n_positions: 0,
        values: Vec::new(),
        intensity: Vec::new(),
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
    /// (call [`ViewState::validated`] first).
    pub fn build(cube: &Cube, state: &ViewState) -> Matrix {
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
        let mut values = Vec::with_capacity(rows.len() * n_positions);
        let full = cube.variant_index("Full");
        for r in &rows {
            let at = RowAt { prompt, step: r.step, variant: r.variant, layer: r.layer };
            let row = cube.row(metric, at);
            match (state.view, state.share, full) {
                (ViewKind::Heads, true, Some(full)) => {
                    let full_row = cube.row(metric, RowAt { variant: full, ..at });
                    values.extend(row.iter().zip(full_row).map(|(&v, &f)| {
                        if f != 0.0 { v / f } else { f32::NAN }
                    }));
                }
                _ => values.extend_from_slice(row),
            }
        }

        let mut m = Matrix {
            view: state.view,
            prompt,
            metric,
            rows,
            groups,
            n_positions,
            intensity: vec![f32::NAN; values.len()],
            values,
            reference_max: 0.0,
            grid: None,
        };
        let params = Params { scale: state.scale, clip_percentile: state.clip_percentile };
        let n_rows = m.rows.len();
        let n = n_positions;
        let mut reference_max = 0.0f32;
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
            let (rows, cols) = match state.grid {
                Some(g) => (g.rows, g.cols),
                None => grid_shape(image.len()),
            };
            if n_rows == 1 {
                let first_image = image.first().copied();
                let r1 = normalise_group(&m.values, &mut m.intensity, image.iter().copied(), |i| {
                    state.exclude0 && Some(i) == first_image
                }, params);
                let r2 = normalise_group(&m.values, &mut m.intensity, text.iter().copied(), |i| {
                    state.exclude0 && i == 0
                }, params);
                reference_max = r1.max(r2);
            }
            let image_stats = stats(&m.values, image.iter().copied());
            let text_stats = stats(&m.values, text.iter().copied());
            m.grid = Some(GridModel {
                rows,
                cols,
                image_positions: image,
                text_positions: text,
                image_stats,
                text_stats,
            });
        } else {
            let ex = state.exclude0;
            match state.norm {
                Normalisation::Row => {
                    for r in 0..n_rows {
                        let start = r * n;
                        let rf = normalise_group(&m.values, &mut m.intensity, start..start + n, |i| ex && i == start, params);
                        reference_max = reference_max.max(rf);
                    }
                }
                Normalisation::Column => {
                    for c in 0..n {
                        // exclude0 has nothing to exclude inside one column.
                        let idx = (0..n_rows).map(move |r| r * n + c);
                        let rf = normalise_group(&m.values, &mut m.intensity, idx, |_| false, params);
                        reference_max = reference_max.max(rf);
                    }
                }
                Normalisation::Global => {
                    let total = n_rows * n;
                    reference_max = normalise_group(&m.values, &mut m.intensity, 0..total, |i| ex && n > 0 && i % n == 0, params);
                }
            }
        }
        m.reference_max = reference_max;
        m
    }

    /// Raw value of a cell (NaN = no data).
    pub fn value(&self, row: usize, position: usize) -> f32 {
        if position >= self.n_positions {
            return f32::NAN;
        }
        self.values.get(row * self.n_positions + position).copied().unwrap_or(f32::NAN)
    }

    /// Intensity of a cell (NaN = no data).
    pub fn intensity_at(&self, row: usize, position: usize) -> f32 {
        if position >= self.n_positions {
            return f32::NAN;
        }
        self.intensity.get(row * self.n_positions + position).copied().unwrap_or(f32::NAN)
    }

    /// The first row showing (layer index, variant index) in the cube's axes.
    pub fn find_row(&self, layer: usize, variant: usize) -> Option<usize> {
        self.rows.iter().position(|r| r.layer == layer && r.variant == variant)
    }
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

#[derive(Clone, Copy)]
struct Params {
    scale: Scale,
    clip_percentile: Option<f32>,
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

/// Normalise the cells `idx` of `values` into `out`; cells for which `excluded(i)` holds are
/// left out of the reference (and clamp to 1). Returns the reference value (data units).
fn normalise_group(
    values: &[f32],
    out: &mut [f32],
    idx: impl Iterator<Item = usize> + Clone,
    excluded: impl Fn(usize) -> bool,
    params: Params,
) -> f32 {
    if params.scale == Scale::Percentile {
        let mut sorted: Vec<f32> =
            idx.clone().filter(|&i| !excluded(i)).map(|i| values[i]).filter(|v| !v.is_nan()).collect();
        sorted.sort_unstable_by(f32::total_cmp);
        let n = sorted.len();
        for i in idx {
            let v = values[i];
            out[i] = if v.is_nan() {
                f32::NAN
            } else if n == 0 {
                1.0
            } else {
                sorted.partition_point(|&x| x <= v) as f32 / n as f32
            };
        }
        return sorted.last().copied().unwrap_or(0.0);
    }
    let reference = match params.clip_percentile {
        Some(p) => {
            let mut abs: Vec<f32> =
                idx.clone().filter(|&i| !excluded(i)).map(|i| values[i].abs()).filter(|v| !v.is_nan()).collect();
            percentile_nearest_rank(&mut abs, p).unwrap_or(0.0)
        }
        None => idx
            .clone()
            .filter(|&i| !excluded(i))
            .map(|i| values[i].abs())
            .filter(|v| !v.is_nan())
            .fold(0.0f32, f32::max),
    };
    for i in idx {
        let v = values[i];
        out[i] = if v.is_nan() {
            f32::NAN
        } else if reference > 0.0 && reference.is_finite() {
            apply_scale(params.scale, v.abs() / reference).copysign(v)
        } else if v != 0.0 {
            1.0f32.copysign(v)
        } else {
            0.0
        };
    }
    reference
}
