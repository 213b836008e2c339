//! Layout (where things go on the canvas, in CSS px), hit-testing, zoom/pan and tooltips.

use serde::Serialize;

use crate::cube::Cube;

use super::colour::{format_number, Colourbar, Rgba};
use super::slice::Matrix;
use super::state::{InclusiveRange, StepSelection, ViewKind, ViewState};

/// The canvas: size in CSS pixels and the device pixel ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    pub width_css: f32,
    pub height_css: f32,
    /// `window.devicePixelRatio` (1 for figures).
    pub device_pixel_ratio: f32,
    /// Height reserved at the top (e.g. a figure title); 0 on the page.
    pub top_css: f32,
}

impl Viewport {
    /// A viewport with nothing reserved at the top.
    pub fn new(width_css: f32, height_css: f32, device_pixel_ratio: f32) -> Self {
        let dpr = if device_pixel_ratio.is_finite() && device_pixel_ratio > 0.0 { device_pixel_ratio } else { 1.0 };
        Viewport { width_css: width_css.max(1.0), height_css: height_css.max(1.0), device_pixel_ratio: dpr, top_css: 0.0 }
    }

    /// Canvas size in device pixels (`round(css · dpr)`).
    pub fn device_size(&self) -> (u32, u32) {
        (
            (self.width_css * self.device_pixel_ratio).round().max(1.0) as u32,
            (self.height_css * self.device_pixel_ratio).round().max(1.0) as u32,
        )
    }
}

/// An axis-aligned rectangle in CSS px.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Rect {
    /// Whether the point lies inside (left/top edges included, right/bottom excluded).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && x < self.x + self.w && y >= self.y && y < self.y + self.h
    }
}

/// Horizontal alignment of a label relative to its anchor (canvas `textAlign`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    Left,
    Center,
    Right,
}

/// A text label for canvas `fillText`: anchor `(x, y)` in CSS px, vertically centred
/// (`textBaseline = "middle"`), rotated by `rotate_deg` about the anchor (−90 = reading upwards).
/// The text is raw token text: draw it as text, never as HTML.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    pub x: f32,
    pub y: f32,
    pub text: String,
    pub align: Align,
    pub font_px: f32,
    pub rotate_deg: f32,
    pub colour: Rgba,
}

/// Geometry of the grid view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridGeometry {
    /// The patch grid (draw the loaded image into this rectangle).
    pub grid: Rect,
    /// Side of one square cell.
    pub cell_css: f32,
    pub rows: usize,
    pub cols: usize,
    /// The text-token strip.
    pub strip: Rect,
    pub chip_w_css: f32,
    pub chip_h_css: f32,
    pub chips_per_row: usize,
}

/// Where everything goes for one (viewport, matrix, state). Cheap to compute; recompute per frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub viewport: Viewport,
    pub view: ViewKind,
    /// Heatmap cells (layers and heads views); the grid + strip area in the grid view.
    pub heatmap: Rect,
    /// Row labels, left of the heatmap.
    pub row_gutter: Rect,
    /// Token texts and position numbers, above the heatmap.
    pub header: Rect,
    /// The colourbar's gradient (its ticks and caption go below it).
    pub colourbar: Rect,
    /// First visible position.
    pub first_position: usize,
    /// Number of visible positions (columns).
    pub n_visible: usize,
    /// Number of rows.
    pub n_rows: usize,
    /// Column width and row height (CSS px).
    pub col_w_css: f32,
    pub row_h_css: f32,
    /// Whether token texts are shown in the header.
    pub show_tokens: bool,
    /// Grid view geometry.
    pub grid: Option<GridGeometry>,
}

/// The cell under a point: row index into [`Matrix::rows`] and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub row: usize,
    pub position: usize,
}

const PAD: f32 = 6.0;
const POSITION_ROW_H: f32 = 14.0;
const TOKEN_ROW_H: f32 = 70.0;
const COLOURBAR_BAND_H: f32 = 46.0;
const GROUP_LABEL_W: f32 = 56.0;
const STATS_H: f32 = 18.0;
/// Minimum column width (CSS px) for token texts to be shown.
pub const MIN_TOKEN_COL_W: f32 = 9.0;

/// Visible position window for a state: the zoom clamped to `0..n_positions`.
pub fn visible_window(zoom: Option<InclusiveRange>, n_positions: usize) -> (usize, usize) {
    if n_positions == 0 {
        return (0, 0);
    }
    match zoom {
        None => (0, n_positions),
        Some(z) => {
            let last = n_positions as i64 - 1;
            let first = z.first.clamp(0, last);
            let end = z.last.clamp(first, last);
            (first as usize, (end - first + 1) as usize)
        }
    }
}

fn row_label(cube: &Cube, matrix: &Matrix, row: usize) -> String {
    let r = &matrix.rows[row];
    match matrix.view {
        ViewKind::Heads => cube.variants.get(r.variant).cloned().unwrap_or_default(),
        _ => cube.layers.get(r.layer).map_or(String::new(), |l| l.to_string()),
    }
}

impl Layout {
    /// Compute the layout.
    pub fn compute(viewport: Viewport, cube: &Cube, matrix: &Matrix, state: &ViewState) -> Layout {
        let vp = viewport;
        let top = vp.top_css + PAD;
        let colourbar = Rect {
            x: PAD + 60.0,
            y: vp.height_css - COLOURBAR_BAND_H,
            w: (vp.width_css - 2.0 * PAD - 120.0).clamp(10.0, 420.0),
            h: 10.0,
        };
        let bottom = vp.height_css - COLOURBAR_BAND_H - PAD;
        if matrix.view == ViewKind::Grid {
            return Self::compute_grid(vp, matrix, top, bottom, colourbar);
        }
        let (first, n_visible) = visible_window(state.zoom, matrix.n_positions);
        let max_chars = (0..matrix.rows.len()).map(|r| row_label(cube, matrix, r).chars().count()).max().unwrap_or(1);
        let grouped = matrix.groups.len() > 1;
        let gutter_w = max_chars.clamp(2, 14) as f32 * 7.0 + 10.0 + if grouped { GROUP_LABEL_W } else { 0.0 };
        let hx = PAD + gutter_w;
        let hw = (vp.width_css - hx - PAD).max(1.0);
        let col_w = if n_visible > 0 { hw / n_visible as f32 } else { hw };
        let show_tokens = col_w >= MIN_TOKEN_COL_W;
        let header_h = POSITION_ROW_H + if show_tokens { TOKEN_ROW_H } else { 0.0 };
        let hy = top + header_h;
        let hh = (bottom - hy).max(1.0);
        let n_rows = matrix.rows.len();
        let row_h = if n_rows > 0 { hh / n_rows as f32 } else { hh };
        Layout {
            viewport: vp,
            view: matrix.view,
            heatmap: Rect { x: hx, y: hy, w: hw, h: hh },
            row_gutter: Rect { x: PAD, y: hy, w: gutter_w, h: hh },
            header: Rect { x: hx, y: top, w: hw, h: header_h },
            colourbar,
            first_position: first,
            n_visible,
            n_rows,
            col_w_css: col_w,
            row_h_css: row_h,
            show_tokens,
            grid: None,
        }
    }

    fn compute_grid(vp: Viewport, matrix: &Matrix, top: f32, bottom: f32, colourbar: Rect) -> Layout {
        let model = matrix.grid.as_ref();
        let (rows, cols) = model.map_or((0, 0), |g| (g.rows, g.cols));
        let n_text = model.map_or(0, |g| g.text_positions.len());
        let x = PAD;
        let w = (vp.width_css - 2.0 * PAD).max(1.0);
        let chip_w = 64.0f32.min(w);
        let chip_h = 20.0;
        let per_row = ((w / chip_w).floor() as usize).max(1);
        let strip_rows = n_text.div_ceil(per_row);
        let strip_h = strip_rows as f32 * chip_h;
        let grid_top = top + STATS_H;
        let avail_h = (bottom - grid_top - strip_h - PAD).max(1.0);
        let cell = if rows > 0 && cols > 0 { (w / cols as f32).min(avail_h / rows as f32).max(0.5) } else { 1.0 };
        let grid = Rect { x, y: grid_top, w: cell * cols as f32, h: cell * rows as f32 };
        let strip = Rect { x, y: grid.y + grid.h + PAD, w: per_row as f32 * chip_w, h: strip_h };
        let area_h = strip.y + strip.h - grid_top;
        Layout {
            viewport: vp,
            view: ViewKind::Grid,
            heatmap: Rect { x, y: grid_top, w, h: area_h.max(1.0) },
            row_gutter: Rect::default(),
            header: Rect { x, y: top, w, h: STATS_H },
            colourbar,
            first_position: 0,
            n_visible: matrix.n_positions,
            n_rows: matrix.rows.len(),
            col_w_css: cell,
            row_h_css: cell,
            show_tokens: false,
            grid: Some(GridGeometry { grid, cell_css: cell, rows, cols, strip, chip_w_css: chip_w, chip_h_css: chip_h, chips_per_row: per_row }),
        }
    }

    /// The cell under `(x, y)` (CSS px relative to the canvas), or `None`.
    pub fn hit_test(&self, matrix: &Matrix, x: f32, y: f32) -> Option<Hit> {
        if let Some(g) = &self.grid {
            let model = matrix.grid.as_ref()?;
            if matrix.rows.is_empty() {
                return None;
            }
            if g.grid.contains(x, y) {
                let c = ((x - g.grid.x) / g.cell_css).floor() as usize;
                let r = ((y - g.grid.y) / g.cell_css).floor() as usize;
                if r >= g.rows || c >= g.cols {
                    return None;
                }
                let k = r * g.cols + c;
                return model.image_positions.get(k).map(|&position| Hit { row: 0, position });
            }
            if g.strip.contains(x, y) {
                let c = ((x - g.strip.x) / g.chip_w_css).floor() as usize;
                let r = ((y - g.strip.y) / g.chip_h_css).floor() as usize;
                if c >= g.chips_per_row {
                    return None;
                }
                let k = r * g.chips_per_row + c;
                return model.text_positions.get(k).map(|&position| Hit { row: 0, position });
            }
            return None;
        }
        if !self.heatmap.contains(x, y) || self.n_visible == 0 || self.n_rows == 0 {
            return None;
        }
        let c = ((x - self.heatmap.x) / self.col_w_css).floor() as usize;
        let r = ((y - self.heatmap.y) / self.row_h_css).floor() as usize;
        (c < self.n_visible && r < self.n_rows).then_some(Hit { row: r, position: self.first_position + c })
    }

    /// Centre (CSS px) of the cell of a matrix row and position, or `None` when not visible.
    pub fn cell_centre(&self, matrix: &Matrix, row: usize, position: usize) -> Option<(f32, f32)> {
        if row >= matrix.rows.len() {
            return None;
        }
        if let Some(g) = &self.grid {
            let model = matrix.grid.as_ref()?;
            if let Ok(k) = model.image_positions.binary_search(&position) {
                let (r, c) = (k / g.cols.max(1), k % g.cols.max(1));
                if r >= g.rows {
                    return None;
                }
                return Some((g.grid.x + (c as f32 + 0.5) * g.cell_css, g.grid.y + (r as f32 + 0.5) * g.cell_css));
            }
            let k = model.text_positions.binary_search(&position).ok()?;
            let (r, c) = (k / g.chips_per_row, k % g.chips_per_row);
            return Some((g.strip.x + (c as f32 + 0.5) * g.chip_w_css, g.strip.y + (r as f32 + 0.5) * g.chip_h_css));
        }
        if position < self.first_position || position >= self.first_position + self.n_visible {
            return None;
        }
        let c = (position - self.first_position) as f32;
        Some((self.heatmap.x + (c + 0.5) * self.col_w_css, self.heatmap.y + (row as f32 + 0.5) * self.row_h_css))
    }

    /// Centre (CSS px) of the cell of (layer value, position, variant name), or `None` when it is
    /// not visible. With `step=all` the first step's row is used. Inverse of [`Layout::hit_test`].
    pub fn locate(&self, cube: &Cube, matrix: &Matrix, layer: i64, position: usize, variant: &str) -> Option<(f32, f32)> {
        let li = cube.layer_index(layer)?;
        let vi = cube.variant_index(variant)?;
        let row = matrix.find_row(li, vi)?;
        self.cell_centre(matrix, row, position)
    }

    /// Fractional position under `x` (for zooming about the pointer); `None` outside the columns
    /// or in the grid view.
    pub fn position_at_x(&self, x: f32) -> Option<f64> {
        if self.grid.is_some() || x < self.heatmap.x || x >= self.heatmap.x + self.heatmap.w {
            return None;
        }
        Some(self.first_position as f64 + ((x - self.heatmap.x) / self.col_w_css) as f64)
    }

    /// How many positions a horizontal drag of `dx_css` moves (positive = towards later positions
    /// when dragging left, as in a map: pass `-dx`).
    pub fn positions_for_dx(&self, dx_css: f32) -> f64 {
        if self.col_w_css > 0.0 {
            (dx_css / self.col_w_css) as f64
        } else {
            0.0
        }
    }

    /// Text labels to draw with `fillText` on top of the raster: row labels, step group labels,
    /// token texts and position numbers, cell values (when `values` is on and they fit), the grid
    /// view's stats and chip texts, and the colourbar's ticks and caption.
    pub fn labels(&self, cube: &Cube, matrix: &Matrix, state: &ViewState) -> Vec<Label> {
        let mut out = Vec::new();
        let black = [0, 0, 0, 255];
        let grey = [90, 90, 90, 255];
        let prompt = cube.prompts.get(matrix.prompt);
        if let (Some(g), Some(model)) = (&self.grid, &matrix.grid) {
            let layer = matrix.rows.first().and_then(|r| cube.layers.get(r.layer)).copied().unwrap_or(0);
            let stats = &model.image_stats;
            out.push(Label {
                x: self.header.x,
                y: self.header.y + STATS_H / 2.0,
                text: format!(
                    "layer {layer} · image max {} · mean {} · grid {}×{} · {} image tokens · {} text tokens",
                    stats.max.map_or("—".into(), format_number),
                    stats.mean.map_or("—".into(), format_number),
                    model.rows,
                    model.cols,
                    model.image_positions.len(),
                    model.text_positions.len()
                ),
                align: Align::Left,
                font_px: 12.0,
                rotate_deg: 0.0,
                colour: black,
            });
            for (k, &pos) in model.text_positions.iter().enumerate() {
                let (r, c) = (k / g.chips_per_row, k % g.chips_per_row);
                let t = matrix.intensity_at(0, pos);
                let bg = if state.heatmap { state.cmap.colour(t) } else { super::colour::PLAIN };
                out.push(Label {
                    x: g.strip.x + (c as f32 + 0.5) * g.chip_w_css,
                    y: g.strip.y + (r as f32 + 0.5) * g.chip_h_css,
                    text: display_token(prompt.and_then(|p| p.token(pos)).unwrap_or(""), 9),
                    align: Align::Center,
                    font_px: 10.0,
                    rotate_deg: 0.0,
                    colour: super::state::ColourMap::text_colour_on(bg),
                });
            }
        } else {
            let hm = self.heatmap;
            // Row labels, thinned so they do not overlap.
            let every = ((11.0 / self.row_h_css.max(0.01)).ceil() as usize).max(1);
            for r in (0..self.n_rows).step_by(every) {
                out.push(Label {
                    x: hm.x - 4.0,
                    y: hm.y + (r as f32 + 0.5) * self.row_h_css,
                    text: row_label(cube, matrix, r),
                    align: Align::Right,
                    font_px: (self.row_h_css * 0.8).clamp(7.0, 11.0),
                    rotate_deg: 0.0,
                    colour: grey,
                });
            }
            if matrix.groups.len() > 1 {
                for grp in &matrix.groups {
                    let y = hm.y + (grp.first_row as f32 + grp.n_rows as f32 / 2.0) * self.row_h_css;
                    if grp.n_rows as f32 * self.row_h_css < 10.0 && grp.step % 5 != 0 {
                        continue;
                    }
                    out.push(Label {
                        x: self.row_gutter.x,
                        y,
                        text: format!("step {}", cube.steps.get(grp.step).copied().unwrap_or(0)),
                        align: Align::Left,
                        font_px: 10.0,
                        rotate_deg: 0.0,
                        colour: black,
                    });
                }
            }
            // Position numbers, every k-th with k a 1-2-5 step.
            let k = nice_step((34.0 / self.col_w_css.max(0.001)).ceil() as usize);
            let end = self.first_position + self.n_visible;
            let start = self.first_position.div_ceil(k) * k;
            for p in (start..end).step_by(k) {
                let x = hm.x + ((p - self.first_position) as f32 + 0.5) * self.col_w_css;
                out.push(Label { x, y: hm.y - POSITION_ROW_H / 2.0, text: p.to_string(), align: Align::Center, font_px: 10.0, rotate_deg: 0.0, colour: grey });
            }
            if self.show_tokens {
                let font = (self.col_w_css * 0.85).clamp(7.0, 12.0);
                for p in self.first_position..end {
                    let text = display_token(prompt.and_then(|pr| pr.token(p)).unwrap_or(""), 12);
                    let x = hm.x + ((p - self.first_position) as f32 + 0.5) * self.col_w_css;
                    out.push(Label {
                        x,
                        y: hm.y - POSITION_ROW_H - 3.0,
                        text,
                        align: Align::Left,
                        font_px: font,
                        rotate_deg: -90.0,
                        colour: black,
                    });
                }
            }
            if state.values && self.col_w_css >= 30.0 && self.row_h_css >= 12.0 {
                let font = (self.row_h_css * 0.6).clamp(8.0, 11.0);
                for r in 0..self.n_rows {
                    for p in self.first_position..end {
                        let v = matrix.value(r, p);
                        if v.is_nan() {
                            continue;
                        }
                        let bg = if state.heatmap { state.cmap.colour(matrix.intensity_at(r, p)) } else { super::colour::PLAIN };
                        out.push(Label {
                            x: hm.x + ((p - self.first_position) as f32 + 0.5) * self.col_w_css,
                            y: hm.y + (r as f32 + 0.5) * self.row_h_css,
                            text: format_cell_value(v, self.col_w_css),
                            align: Align::Center,
                            font_px: font,
                            rotate_deg: 0.0,
                            colour: super::state::ColourMap::text_colour_on(bg),
                        });
                    }
                }
            }
        }
        // Colourbar.
        let metric_name = cube.metrics.get(matrix.metric).map_or("", |m| m.name.as_str());
        let bar = Colourbar::describe(matrix, state, metric_name);
        let cb = self.colourbar;
        for t in &bar.ticks {
            out.push(Label { x: cb.x + t.at * cb.w, y: cb.y + cb.h + 8.0, text: t.label.clone(), align: Align::Center, font_px: 10.0, rotate_deg: 0.0, colour: grey });
        }
        out.push(Label { x: cb.x, y: cb.y + cb.h + 24.0, text: bar.caption, align: Align::Left, font_px: 11.0, rotate_deg: 0.0, colour: black });
        out
    }
}

fn nice_step(min: usize) -> usize {
    let mut base = 1;
    loop {
        for m in [1, 2, 5] {
            if base * m >= min {
                return base * m;
            }
        }
        base *= 10;
    }
}

fn format_cell_value(v: f32, col_w_css: f32) -> String {
    if col_w_css >= 44.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

/// Token text made visible for labels: newline → `↵`, carriage return → `␍`, tab → `→`,
/// space → `·`; longer than `max_chars` → shortened with `…`. Empty → `∅`.
pub fn display_token(text: &str, max_chars: usize) -> String {
    if text.is_empty() {
        return "∅".to_string();
    }
    let visible: Vec<char> = text
        .chars()
        .map(|c| match c {
            '\n' => '↵',
            '\r' => '␍',
            '\t' => '→',
            ' ' => '·',
            c if c.is_control() => '�',
            c => c,
        })
        .collect();
    if visible.len() <= max_chars.max(1) {
        visible.into_iter().collect()
    } else {
        let mut s: String = visible[..max_chars.max(1) - 1].iter().collect();
        s.push('…');
        s
    }
}

/// Zoom the position window about `anchor` (a fractional position, e.g. from
/// [`Layout::position_at_x`]) by `factor` (< 1 zooms in, > 1 out), keeping the anchor at the same
/// place on screen. At least 2 positions stay visible; covering everything gives `None`.
pub fn zoom_about(zoom: Option<InclusiveRange>, n_positions: usize, anchor: f64, factor: f64) -> Option<InclusiveRange> {
    if n_positions < 2 || !factor.is_finite() || factor <= 0.0 {
        return zoom;
    }
    let (first, len) = visible_window(zoom, n_positions);
    let n = n_positions as f64;
    let new_len = (len as f64 * factor).round().clamp(2.0, n);
    let anchor = anchor.clamp(first as f64, (first + len) as f64);
    let frac = (anchor - first as f64) / len as f64;
    let start = (anchor - frac * new_len).round().clamp(0.0, n - new_len);
    window(start as usize, new_len as usize, n_positions)
}

/// Move the window by `delta_positions` (rounded), staying inside `0..n_positions`.
pub fn pan(zoom: Option<InclusiveRange>, n_positions: usize, delta_positions: f64) -> Option<InclusiveRange> {
    let (first, len) = visible_window(zoom, n_positions);
    if len >= n_positions || !delta_positions.is_finite() {
        return zoom;
    }
    let start = (first as f64 + delta_positions.round()).clamp(0.0, (n_positions - len) as f64);
    window(start as usize, len, n_positions)
}

/// Show every position.
pub fn fit() -> Option<InclusiveRange> {
    None
}

fn window(start: usize, len: usize, n_positions: usize) -> Option<InclusiveRange> {
    if start == 0 && len >= n_positions {
        None
    } else {
        Some(InclusiveRange { first: start as i64, last: (start + len - 1) as i64 })
    }
}

/// What the tooltip shows for a cell (also `maskImpact.probe`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    pub step: i64,
    pub layer: i64,
    pub position: usize,
    pub variant: String,
    pub metric: String,
    /// The value shown (`None` = no data). In the heads view with `share`, the share of Full.
    pub value: Option<f32>,
    /// The raw metric value when `value` is a share of Full.
    pub raw_value: Option<f32>,
    /// Raw token text (insert as text, never as HTML).
    pub token: Option<String>,
}

impl Probe {
    /// The probe of a hit cell.
    pub fn of(cube: &Cube, matrix: &Matrix, state: &ViewState, hit: Hit) -> Option<Probe> {
        let r = matrix.rows.get(hit.row)?;
        let v = matrix.value(hit.row, hit.position);
        let share = matrix.view == ViewKind::Heads && state.share;
        let raw = if share {
            let at = cube.cell(matrix.prompt, r.step, r.variant, r.layer);
            cube.value(matrix.metric, at, hit.position)
        } else {
            None
        };
        Some(Probe {
            step: *cube.steps.get(r.step)?,
            layer: *cube.layers.get(r.layer)?,
            position: hit.position,
            variant: cube.variants.get(r.variant)?.clone(),
            metric: cube.metrics.get(matrix.metric)?.name.clone(),
            value: (!v.is_nan()).then_some(v),
            raw_value: raw,
            token: cube.prompts.get(matrix.prompt).and_then(|p| p.token(hit.position)).map(str::to_string),
        })
    }

    /// Tooltip text (plain text, several lines): value with 4 decimals (or `no data`), layer,
    /// position, token, step, variant, metric.
    pub fn tooltip_text(&self) -> String {
        let value = match (self.value, self.raw_value) {
            (Some(v), Some(raw)) => format!("{v:.4} of Full ({raw:.4})"),
            (Some(v), None) => format!("{v:.4}"),
            (None, _) => "no data".to_string(),
        };
        let token = match &self.token {
            Some(t) => format!("“{t}” ({} chars)", t.chars().count()),
            None => "(none)".to_string(),
        };
        format!(
            "{}: {value}\nlayer {} · position {}\ntoken {token}\nstep {} · variant {}",
            self.metric, self.layer, self.position, self.step, self.variant
        )
    }
}

/// The step of a state as text (`all` or the value), for captions.
pub fn step_text(step: StepSelection) -> String {
    match step {
        StepSelection::All => "all steps".to_string(),
        StepSelection::One(n) => format!("step {n}"),
    }
}
