//! View → pixels: the RGBA raster of the canvas, SVG/PNG figures for the CLI, and the token
//! profile chart (generic over a plotters backend; the page uses plotters-canvas).
//!
//! The raster holds every pixel that depends on the data (heat cells, image grid, text chips,
//! step separators, the pinned position's outline, the colourbar gradient); text goes on top
//! with [`Layout::labels`](crate::view::Layout::labels) (`fillText` on the page, SVG `<text>` or a
//! bitmap font in figures). Figures use the same [`Matrix`], [`Layout`] and [`paint`] as the page.
//!
//! Page, per frame: `paint(&cube, matrix, &layout, &state, &mut raster)` then one
//! `putImageData(ImageData::new_with_u8_clamped_array_and_sh(&raster.rgba, raster.width_px, raster.height_px), 0, 0)`.
//! `putImageData` replaces pixels: to show the heat grid over a loaded picture (grid view,
//! `opacity` < 1), put the raster on an offscreen canvas and `drawImage` it over the picture.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::cube::Cube;
use crate::view::{
    Align, Colourbar, Label, Layout, Matrix, Palette as CellPalette, Rgba, ViewKind, ViewState, Viewport,
    BACKGROUND, NO_DATA, PLAIN,
};

/// What can go wrong while drawing a figure.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The plotting library failed (a backend error).
    #[error("cannot draw the figure: {0}")]
    Plot(String),
    /// PNG encoding failed.
    #[error("cannot encode the PNG image: {0}")]
    Png(#[from] png::EncodingError),
    /// The requested size is unusable.
    #[error("figure size {width}×{height} px is too small or too large (16..=16384 px per side)")]
    Size { width: u32, height: u32 },
}

/// An RGBA image in device pixels, row-major, 4 bytes per pixel (canvas `ImageData` layout).
/// Reuse one across frames to avoid reallocating.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Raster {
    pub width_px: u32,
    pub height_px: u32,
    pub rgba: Vec<u8>,
}

impl Raster {
    /// A raster filled with `colour`.
    pub fn new(width_px: u32, height_px: u32, colour: Rgba) -> Self {
        let mut r = Raster::default();
        r.reset(width_px, height_px, colour);
        r
    }

    /// Resize (keeping the allocation when possible) and fill with `colour`.
    pub fn reset(&mut self, width_px: u32, height_px: u32, colour: Rgba) {
        self.width_px = width_px;
        self.height_px = height_px;
        let n = width_px as usize * height_px as usize;
        self.rgba.clear();
        if colour.iter().all(|&c| c == colour[0]) {
            self.rgba.resize(n * 4, colour[0]);
        } else {
            self.rgba.resize(n * 4, 0);
            for px in self.rgba.chunks_exact_mut(4) {
                px.copy_from_slice(&colour);
            }
        }
    }

    /// [`Raster::reset`], except that when the size is unchanged the pixels inside `keep`
    /// (`x0, y0, x1, y1`, device px, exclusive ends) are left as they are: for a caller about
    /// to overwrite them all.
    fn reset_around(&mut self, width_px: u32, height_px: u32, colour: Rgba, keep: Option<(i64, i64, i64, i64)>) {
        let same = self.width_px == width_px && self.height_px == height_px && self.rgba.len() == width_px as usize * height_px as usize * 4;
        let Some((x0, y0, x1, y1)) = keep.filter(|_| same) else {
            return self.reset(width_px, height_px, colour);
        };
        let (w, h) = (width_px as i64, height_px as i64);
        let (x0, x1, y0, y1) = (x0.clamp(0, w), x1.clamp(0, w), y0.clamp(0, h), y1.clamp(0, h));
        self.fill_rect(0, 0, w, y0, colour);
        self.fill_rect(0, y1, w, h, colour);
        self.fill_rect(0, y0, x0, y1, colour);
        self.fill_rect(x1, y0, w, y1, colour);
    }

    /// Colour of a pixel (`None` outside).
    pub fn pixel(&self, x: u32, y: u32) -> Option<Rgba> {
        if x >= self.width_px || y >= self.height_px {
            return None;
        }
        let i = (y as usize * self.width_px as usize + x as usize) * 4;
        Some([self.rgba[i], self.rgba[i + 1], self.rgba[i + 2], self.rgba[i + 3]])
    }

    /// Fill the device-pixel rectangle `[x0, x1) × [y0, y1)` (clipped).
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgba) {
        let (w, h) = (self.width_px as i64, self.height_px as i64);
        let (x0, x1, y0, y1) = (x0.clamp(0, w), x1.clamp(0, w), y0.clamp(0, h), y1.clamp(0, h));
        let uniform = colour.iter().all(|&c| c == colour[0]);
        for y in y0..y1 {
            let row = (y * w) as usize * 4;
            let Some(span) = self.rgba.get_mut(row + x0 as usize * 4..row + x1 as usize * 4) else { continue };
            if uniform {
                span.fill(colour[0]);
            } else {
                for px in span.chunks_exact_mut(4) {
                    px.copy_from_slice(&colour);
                }
            }
        }
    }
}

/// Device pixel of a CSS coordinate.
fn dev(css: f32, dpr: f32) -> i64 {
    (css * dpr).round() as i64
}

/// For each device pixel `0..n_px` along an axis starting at device pixel `start_px`, the range
/// of cells `[lo, hi)` it covers: the cells whose centre falls inside the pixel, or the cell under
/// the pixel's centre when cells are wider than a pixel. `cell_px` = cell size in device px.
/// Every cell is covered by exactly one pixel when cells are smaller than a pixel, so no cell
/// (a single hot one included) is left out of the picture.
fn cover_ranges(start_px: f64, n_px: usize, cell_px: f64, n_cells: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(n_px);
    if n_cells == 0 || cell_px <= 0.0 {
        out.resize(n_px, (0, 0));
        return out;
    }
    for i in 0..n_px {
        let u0 = (i as f64 - start_px) / cell_px;
        let u1 = (i as f64 + 1.0 - start_px) / cell_px;
        let lo = ((u0 - 0.5).ceil().max(0.0) as usize).min(n_cells);
        let hi = ((u1 - 0.5).ceil().max(0.0) as usize).min(n_cells);
        if hi > lo {
            out.push((lo, hi));
        } else {
            let c = (((u0 + u1) / 2.0).floor().max(0.0) as usize).min(n_cells - 1);
            out.push((c, c + 1));
        }
    }
    out
}

/// Consecutive pixels covering the same cells: `(lo, hi, first_px, end_px)`.
fn runs(ranges: &[(usize, usize)]) -> Vec<(usize, usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize, usize)> = Vec::new();
    for (px, &(lo, hi)) in ranges.iter().enumerate() {
        match out.last_mut() {
            Some(r) if (r.0, r.1) == (lo, hi) => r.3 = px + 1,
            _ => out.push((lo, hi, px, px + 1)),
        }
    }
    out
}

/// Reduce the cells of a table to device pixels: for each run of device rows covering the same
/// matrix rows, and each run of device columns covering the same positions, the maximum of
/// [`Matrix::relative`] over those cells (NaN only when none has data). `relative` holds
/// `n_rows × n` values; positions `first..first + n_visible` are drawn.
///
/// The scales are monotone and clamp at ±1, so the colour of this maximum (values below −1
/// count as −1) is the colour of the most intense cell: a single hot cell among many is never
/// lost.
///
/// Calls `emit(row_run, reduced)` once per run of device rows, with `reduced[j]` for column
/// run `j`.
fn reduce_table(
    relative: &[f32],
    n: usize,
    first: usize,
    n_visible: usize,
    row_runs: &[(usize, usize, usize, usize)],
    col_runs: &[(usize, usize, usize, usize)],
    mut emit: impl FnMut(&(usize, usize, usize, usize), &[f32]),
) {
    // No data is −∞ while reducing, so the maximum is a plain (vectorised) comparison (NaN
    // compares false: no data never wins); values below −1 are clamped to −1 (same colour) so
    // that −∞ is never data.
    let mut cells = vec![f32::NEG_INFINITY; n_visible];
    let mut reduced = vec![f32::NAN; col_runs.len()];
    let identity = col_runs.len() == n_visible && col_runs.iter().enumerate().all(|(j, r)| (r.0, r.1) == (j, j + 1));
    for rr in row_runs {
        let (lo, hi) = (rr.0, rr.1);
        cells.fill(f32::NEG_INFINITY);
        for r in lo..hi {
            let Some(row) = relative.get(r * n + first..r * n + first + n_visible) else { break };
            for (a, &b) in cells.iter_mut().zip(row) {
                let b = if b < -1.0 { -1.0 } else { b };
                *a = if b > *a { b } else { *a };
            }
        }
        if identity {
            // One cell per column run: the cells are the reduced values.
            for (out, &m) in reduced.iter_mut().zip(&cells) {
                *out = if m == f32::NEG_INFINITY { f32::NAN } else { m };
            }
            emit(rr, &reduced);
            continue;
        }
        for (out, &(c0, c1, _, _)) in reduced.iter_mut().zip(col_runs) {
            let m = match cells.get(c0..c1) {
                Some([one]) => *one,
                Some(span) => span.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a }),
                None => f32::NEG_INFINITY,
            };
            *out = if m == f32::NEG_INFINITY { f32::NAN } else { m };
        }
        emit(rr, &reduced);
    }
}

const SEPARATOR: Rgba = [40, 40, 40, 255];
const PIN: Rgba = [20, 90, 220, 255];
const GRID_LINE: Rgba = [255, 255, 255, 255];

/// Paint everything but text into `raster` (resized to the viewport's device size).
///
/// Where there are more cells than device pixels (e.g. `step=all`), a pixel shows the maximum
/// intensity of the cells it covers (cells whose centre lies in the pixel), so peaks stay
/// visible: the cells are reduced to device pixels before colouring, and each reduced cell is
/// coloured once ([`Palette`](crate::view::Palette)).
pub fn paint(_cube: &Cube, matrix: &Matrix, layout: &Layout, state: &ViewState, raster: &mut Raster) {
    let vp = layout.viewport;
    let (w, h) = vp.device_size();
    let dpr = vp.device_pixel_ratio;
    // The table overwrites every pixel of its heatmap rectangle: clear only around it.
    let hm = layout.heatmap;
    let covered = matrix.view != ViewKind::Grid
        && layout.n_visible > 0
        && layout.n_rows > 0
        && layout.n_rows == matrix.rows.len()
        && dev(hm.x, dpr) >= 0
        && dev(hm.y, dpr) >= 0
        && dev(hm.x + hm.w, dpr) <= w as i64
        && matrix.relative.len() == matrix.rows.len() * matrix.n_positions
        && layout.first_position + layout.n_visible <= matrix.n_positions;
    let rect = covered.then(|| (dev(hm.x, dpr), dev(hm.y, dpr), dev(hm.x + hm.w, dpr), dev(hm.y + hm.h, dpr)));
    raster.reset_around(w, h, BACKGROUND, rect);
    let colour_of = |t: f32| -> Rgba {
        if t.is_nan() {
            NO_DATA
        } else if state.heatmap {
            state.cmap.colour(t)
        } else {
            PLAIN
        }
    };
    if matrix.view == ViewKind::Grid {
        paint_grid(matrix, layout, state, raster, &colour_of);
    } else {
        paint_table(matrix, layout, state, raster);
    }
    // Colourbar gradient.
    let bar = Colourbar::describe(matrix, state, "");
    let cb = layout.colourbar;
    let (x0, x1, y0, y1) = (dev(cb.x, dpr), dev(cb.x + cb.w, dpr), dev(cb.y, dpr), dev(cb.y + cb.h, dpr));
    let span = (x1 - x0).max(1) as f32;
    for x in x0..x1 {
        let c = bar.colour_at((x - x0) as f32 / (span - 1.0).max(1.0));
        raster.fill_rect(x, y0, x + 1, y1, c);
    }
    let border = [120, 120, 120, 255];
    raster.fill_rect(x0, y0 - 1, x1, y0, border);
    raster.fill_rect(x0, y1, x1, y1 + 1, border);
    raster.fill_rect(x0 - 1, y0 - 1, x0, y1 + 1, border);
    raster.fill_rect(x1, y0 - 1, x1 + 1, y1 + 1, border);
}

fn paint_table(matrix: &Matrix, layout: &Layout, state: &ViewState, raster: &mut Raster) {
    let dpr = layout.viewport.device_pixel_ratio;
    let hm = layout.heatmap;
    let (x0, x1) = (dev(hm.x, dpr), dev(hm.x + hm.w, dpr));
    let (y0, y1) = (dev(hm.y, dpr), dev(hm.y + hm.h, dpr));
    let (w_px, h_px) = ((x1 - x0).max(0) as usize, (y1 - y0).max(0) as usize);
    if w_px == 0 || h_px == 0 || layout.n_visible == 0 || layout.n_rows == 0 {
        return;
    }
    let cols = cover_ranges(hm.x as f64 * dpr as f64 - x0 as f64, w_px, layout.col_w_css as f64 * dpr as f64, layout.n_visible);
    let rows = cover_ranges(hm.y as f64 * dpr as f64 - y0 as f64, h_px, layout.row_h_css as f64 * dpr as f64, layout.n_rows);
    let (col_runs, row_runs) = (runs(&cols), runs(&rows));
    // Reduce to device pixels first (max of the cells under each pixel), colour each reduced
    // cell once through the palette, fill its run of pixels in one line, and copy the line to
    // the device rows of the run. Cost ~ cells + reduced cells + pixels.
    let palette = CellPalette::shared(state.cmap, matrix.scale, state.heatmap);
    let width = raster.width_px as usize;
    let height = raster.height_px as usize;
    let (x0u, y0u) = (x0.max(0) as usize, y0.max(0) as usize);
    if x0u + w_px > width {
        return;
    }
    let mut line: Vec<Rgba> = vec![[0; 4]; w_px];
    let mut colours: Vec<Rgba> = vec![[0; 4]; col_runs.len()];
    // Column run of each device column (a branch-free gather instead of runs of 1 or 2 pixels).
    let run_of_px: Vec<u32> = col_runs.iter().enumerate().flat_map(|(j, r)| std::iter::repeat_n(j as u32, r.3 - r.2)).collect();
    let rgba = &mut raster.rgba;
    reduce_table(&matrix.relative, matrix.n_positions, layout.first_position, layout.n_visible, &row_runs, &col_runs, |rr, reduced| {
        for (c, &t) in colours.iter_mut().zip(reduced) {
            *c = palette.colour(t);
        }
        for (px, &j) in line.iter_mut().zip(&run_of_px) {
            *px = colours.get(j as usize).copied().unwrap_or(BACKGROUND);
        }
        let bytes = line.as_flattened();
        for yi in rr.2..rr.3 {
            let y = y0u + yi;
            if y < height {
                let start = (y * width + x0u) * 4;
                rgba[start..start + w_px * 4].copy_from_slice(bytes);
            }
        }
    });
    let first = layout.first_position;
    // Step group separators: a line across the heatmap when rows are tall enough for it to
    // cover only part of a row (never a whole row of cells); otherwise a mark in the row
    // gutter, so no cell is hidden.
    let row_px = layout.row_h_css * dpr;
    let thick = dpr.round().max(1.0) as i64;
    for g in matrix.groups.iter().skip(1) {
        if g.n_rows as f32 * row_px >= 4.0 {
            let y = dev(hm.y + g.first_row as f32 * layout.row_h_css, dpr);
            if row_px >= 3.0 * thick as f32 {
                raster.fill_rect(x0, y, x1, y + thick, SEPARATOR);
            } else {
                let gx = dev(layout.row_gutter.x, dpr);
                raster.fill_rect(gx, y, x0 - thick, y + thick, SEPARATOR);
            }
        }
    }
    // Pinned position: outline its column.
    if let Some(p) = state.pin {
        if p >= first && p < first + layout.n_visible {
            let t = (2.0 * dpr).round().max(1.0) as i64;
            let a = dev(hm.x + (p - first) as f32 * layout.col_w_css, dpr);
            let b = dev(hm.x + (p - first + 1) as f32 * layout.col_w_css, dpr).max(a + 1);
            raster.fill_rect(a - t, y0, a, y1, PIN);
            raster.fill_rect(b, y0, b + t, y1, PIN);
        }
    }
}

fn paint_grid(matrix: &Matrix, layout: &Layout, state: &ViewState, raster: &mut Raster, colour_of: &dyn Fn(f32) -> Rgba) {
    let (Some(g), Some(model)) = (&layout.grid, &matrix.grid) else {
        return;
    };
    if matrix.rows.is_empty() {
        return;
    }
    let dpr = layout.viewport.device_pixel_ratio;
    let alpha = (state.opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
    let lines = state.gridlines && g.cell_css * dpr >= 4.0;
    for (k, &pos) in model.image_positions.iter().enumerate() {
        let (r, c) = (k / g.cols.max(1), k % g.cols.max(1));
        if r >= g.rows {
            break;
        }
        let mut colour = colour_of(matrix.intensity_at(0, pos));
        colour[3] = alpha;
        let x = g.grid.x + c as f32 * g.cell_css;
        let y = g.grid.y + r as f32 * g.cell_css;
        let (a, b) = (dev(x, dpr), dev(x + g.cell_css, dpr));
        let (top, bottom) = (dev(y, dpr), dev(y + g.cell_css, dpr));
        raster.fill_rect(a, top, b, bottom, colour);
        if lines {
            raster.fill_rect(a, top, b, top + 1, GRID_LINE);
            raster.fill_rect(a, top, a + 1, bottom, GRID_LINE);
        }
        if state.pin == Some(pos) {
            outline(raster, a, top, b, bottom, (2.0 * dpr).round() as i64, PIN);
        }
    }
    for (k, &pos) in model.text_positions.iter().enumerate() {
        let (r, c) = (k / g.chips_per_row, k % g.chips_per_row);
        let x = g.strip.x + c as f32 * g.chip_w_css;
        let y = g.strip.y + r as f32 * g.chip_h_css;
        let (a, b) = (dev(x, dpr) + 1, dev(x + g.chip_w_css, dpr) - 1);
        let (top, bottom) = (dev(y, dpr) + 1, dev(y + g.chip_h_css, dpr) - 1);
        raster.fill_rect(a, top, b, bottom, colour_of(matrix.intensity_at(0, pos)));
        if state.pin == Some(pos) {
            outline(raster, a, top, b, bottom, (2.0 * dpr).round() as i64, PIN);
        }
    }
}

fn outline(raster: &mut Raster, x0: i64, y0: i64, x1: i64, y1: i64, t: i64, c: Rgba) {
    let t = t.max(1);
    raster.fill_rect(x0, y0, x1, y0 + t, c);
    raster.fill_rect(x0, y1 - t, x1, y1, c);
    raster.fill_rect(x0, y0, x0 + t, y1, c);
    raster.fill_rect(x1 - t, y0, x1, y1, c);
}

/// Title of a figure: prompt, view, metric, variant/layer and step.
pub fn figure_title(cube: &Cube, state: &ViewState) -> String {
    let prompt = cube.prompts.get(state.prompt_index(cube)).map_or("", |p| p.name.as_str());
    let what = match state.view {
        ViewKind::Layers => format!("layers × positions · {}", state.variant),
        ViewKind::Heads => format!("variants × positions · layer {}", state.layer),
        ViewKind::Grid => format!("image grid · layer {} · {}", state.layer, state.variant),
    };
    format!("{prompt} · {} · {what} · {}", state.metric, crate::view::step_text(state.step))
}

const TITLE_BAND_CSS: f32 = 26.0;

fn check_size(width: u32, height: u32) -> Result<(), RenderError> {
    if !(16..=16384).contains(&width) || !(16..=16384).contains(&height) {
        return Err(RenderError::Size { width, height });
    }
    Ok(())
}

/// Raster and labels of a figure (title band on top, same layout code as the page).
fn figure_parts(cube: &Cube, state: &ViewState, width: u32, height: u32) -> (Raster, Vec<Label>) {
    let state = state.clone().validated(cube);
    let matrix = Matrix::build(cube, &state);
    let mut vp = Viewport::new(width as f32, height as f32, 1.0);
    vp.top_css = TITLE_BAND_CSS;
    let layout = Layout::compute(vp, cube, &matrix, &state);
    let mut raster = Raster::default();
    paint(cube, &matrix, &layout, &state, &mut raster);
    let mut labels = layout.labels(cube, &matrix, &state);
    labels.push(Label {
        x: 8.0,
        y: TITLE_BAND_CSS / 2.0 + 2.0,
        text: figure_title(cube, &state),
        align: Align::Left,
        font_px: 15.0,
        rotate_deg: 0.0,
        colour: [0, 0, 0, 255],
    });
    (raster, labels)
}

/// An SVG figure of the view (heatmap or grid, axes labels, token texts, colourbar, title).
pub fn figure_svg(cube: &Cube, state: &ViewState, width: u32, height: u32) -> Result<String, RenderError> {
    check_size(width, height)?;
    let (raster, labels) = figure_parts(cube, state, width, height);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| RenderError::Plot(e.to_string());
        root.fill(&WHITE).map_err(err)?;
        for (x0, y0, x1, y1, c) in rectangles(&raster) {
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], RGBColor(c[0], c[1], c[2]).mix(c[3] as f64 / 255.0).filled()))
                .map_err(err)?;
        }
        for l in &labels {
            let colour = RGBColor(l.colour[0], l.colour[1], l.colour[2]);
            let style = TextStyle::from(("sans-serif", l.font_px as f64).into_font())
                .color(&colour)
                .pos(Pos::new(
                    match l.align {
                        Align::Left => HPos::Left,
                        Align::Center => HPos::Center,
                        Align::Right => HPos::Right,
                    },
                    VPos::Center,
                ));
            let style = if l.rotate_deg != 0.0 { style.transform(FontTransform::Rotate270) } else { style };
            root.draw(&Text::new(l.text.clone(), (l.x.round() as i32, l.y.round() as i32), style)).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Cover the non-background pixels of a raster with few rectangles: runs of one colour per
/// pixel row, merged with identical runs of the rows below. Returns `(x0, y0, x1, y1, colour)`
/// with exclusive ends.
fn rectangles(raster: &Raster) -> Vec<(i32, i32, i32, i32, Rgba)> {
    let (w, h) = (raster.width_px as usize, raster.height_px as usize);
    let mut out: Vec<(i32, i32, i32, i32, Rgba)> = Vec::new();
    let mut open: Vec<usize> = Vec::new(); // indexes into `out` of the previous row's runs
    let mut prev_row: Option<&[u8]> = None;
    for y in 0..h {
        let row = &raster.rgba[y * w * 4..(y + 1) * w * 4];
        if prev_row == Some(row) {
            for &i in &open {
                out[i].3 += 1;
            }
            continue;
        }
        open.clear();
        let mut x = 0;
        while x < w {
            let c: Rgba = [row[x * 4], row[x * 4 + 1], row[x * 4 + 2], row[x * 4 + 3]];
            let mut e = x + 1;
            while e < w && row[e * 4..e * 4 + 4] == c {
                e += 1;
            }
            if c != BACKGROUND {
                open.push(out.len());
                out.push((x as i32, y as i32, e as i32, y as i32 + 1, c));
            }
            x = e;
        }
        prev_row = Some(row);
    }
    out
}

/// A PNG figure of the view: the same raster and labels as [`figure_svg`], text drawn with a
/// built-in 8×8 bitmap font.
pub fn figure_png(cube: &Cube, state: &ViewState, width: u32, height: u32) -> Result<Vec<u8>, RenderError> {
    check_size(width, height)?;
    let (mut raster, labels) = figure_parts(cube, state, width, height);
    for l in &labels {
        draw_label(&mut raster, l);
    }
    encode_png(&raster)
}

/// Encode a raster as an RGBA PNG.
pub fn encode_png(raster: &Raster) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, raster.width_px, raster.height_px);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&raster.rgba)?;
        writer.finish()?;
    }
    Ok(out)
}

fn glyph(c: char) -> [u8; 8] {
    use font8x8::UnicodeFonts;
    let c = match c {
        '…' => '~',
        '—' | '–' => '-',
        '“' | '”' => '"',
        c => c,
    };
    font8x8::BASIC_FONTS
        .get(c)
        .or_else(|| font8x8::LATIN_FONTS.get(c))
        .or_else(|| font8x8::GREEK_FONTS.get(c))
        .or_else(|| font8x8::MISC_FONTS.get(c))
        .unwrap_or([0x3c, 0x42, 0x5a, 0x5a, 0x5a, 0x42, 0x3c, 0x00])
}

/// Draw a label with the 8×8 bitmap font (scale 1 below 14 px, 2 from there), rotated −90° when
/// asked, anchored like canvas `fillText` with `textBaseline = "middle"`.
fn draw_label(raster: &mut Raster, l: &Label) {
    let scale: i64 = if l.font_px >= 14.0 { 2 } else { 1 };
    let n = l.text.chars().count() as i64;
    let len = n * 8 * scale;
    let offset = match l.align {
        Align::Left => 0,
        Align::Center => -len / 2,
        Align::Right => -len,
    };
    let (ax, ay) = (l.x.round() as i64, l.y.round() as i64);
    let rotated = l.rotate_deg != 0.0;
    for (i, ch) in l.text.chars().enumerate() {
        let g = glyph(ch);
        for (gy, bits) in g.iter().enumerate() {
            for gx in 0..8 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                // Text coordinates: u along the text, v across (top of the glyph = -4·scale).
                let u = offset + (i as i64 * 8 + gx) * scale;
                let v = (gy as i64 - 4) * scale;
                let (x, y) = if rotated { (ax + v, ay - u) } else { (ax + u, ay + v) };
                raster.fill_rect(x, y, x + scale, y + scale, l.colour);
            }
        }
    }
}

/// Line chart of one position's value across layers for the given variants (the state's step;
/// the first step with `step=all`), drawn on any plotters backend (plotters-canvas on the page,
/// SVG natively). Missing cells break the line.
pub fn token_profile<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    cube: &Cube,
    state: &ViewState,
    position: usize,
    variants: &[String],
) -> Result<(), RenderError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| RenderError::Plot(e.to_string());
    let prompt = state.prompt_index(cube);
    let Some(metric) = cube.metric_index(&state.metric) else {
        return Err(RenderError::Plot(format!("the data has no metric `{}`", state.metric)));
    };
    let step = state.step_indexes(cube).first().copied().unwrap_or(0);
    // (variant, line pieces split at missing cells)
    type Pieces = Vec<Vec<(f64, f64)>>;
    let mut series: Vec<(String, Pieces)> = Vec::new();
    let mut y_max = 0.0f64;
    for name in variants {
        let Some(v) = cube.variant_index(name) else { continue };
        let mut parts = vec![Vec::new()];
        for (li, &layer) in cube.layers.iter().enumerate() {
            match cube.value(metric, cube.cell(prompt, step, v, li), position) {
                Some(val) => {
                    y_max = y_max.max(val as f64);
                    if let Some(p) = parts.last_mut() {
                        p.push((layer as f64, val as f64));
                    }
                }
                None => parts.push(Vec::new()),
            }
        }
        series.push((name.clone(), parts));
    }
    let x0 = cube.layers.first().copied().unwrap_or(0) as f64;
    let x1 = (cube.layers.last().copied().unwrap_or(1) as f64).max(x0 + 1.0);
    let y1 = if y_max > 0.0 { y_max * 1.05 } else { 1.0 };
    area.fill(&WHITE).map_err(err)?;
    let token = cube.prompts.get(prompt).and_then(|p| p.token(position)).unwrap_or("");
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("position {position} “{}” · {} · {}", crate::view::display_token(token, 24), state.metric, crate::view::step_text(state.step)),
            ("sans-serif", 14),
        )
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(48)
        .build_cartesian_2d(x0..x1, 0.0..y1)
        .map_err(err)?;
    chart.configure_mesh().x_desc("layer").y_desc(state.metric.as_str()).draw().map_err(err)?;
    for (i, (name, parts)) in series.into_iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let mut first = true;
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let s = chart.draw_series(LineSeries::new(part, colour.stroke_width(2))).map_err(err)?;
            if first {
                s.label(name.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
                first = false;
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    area.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests;
