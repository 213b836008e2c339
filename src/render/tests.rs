//! Unit tests of painting and figures.

use super::*;
use crate::view::{InclusiveRange, Normalisation, StepSelection, ViewState};

/// A cube with `steps × layers × positions`, one variant `Full`, value `f(step, layer, pos)`.
fn cube(steps: i64, layers: i64, positions: i64, f: impl Fn(i64, i64, i64) -> Option<f32>) -> Cube {
    crate::view::tests_support::grid_cube(steps, layers, positions, f)
}

#[test]
fn cover_ranges_partition_cells() {
    // Cells of half a pixel: two per pixel.
    assert_eq!(cover_ranges(0.0, 4, 0.5, 8), [(0, 2), (2, 4), (4, 6), (6, 8)]);
    // Cells of two pixels: each pixel shows the cell under its centre.
    assert_eq!(cover_ranges(0.0, 4, 2.0, 2), [(0, 1), (0, 1), (1, 2), (1, 2)]);
    // Three cells in two pixels: centres 0.333, 1.0, 1.667 (px) → pixel 0 has cell 0, pixel 1
    // has cells 1 and 2.
    assert_eq!(cover_ranges(0.0, 2, 2.0 / 3.0, 3), [(0, 1), (1, 3)]);
}

#[test]
fn paint_colours_cells_and_no_data() {
    // Row 0: [8, 2, missing, 4] → intensities [1, 0.5, no data, 1] (exclude0).
    let c = cube(1, 1, 4, |_, _, p| [Some(8.0), Some(2.0), None, Some(4.0)][p as usize]);
    let s = ViewState::for_cube(&c);
    let m = Matrix::build(&c, &s);
    for dpr in [1.0, 2.0] {
        let layout = Layout::compute(Viewport::new(400.0, 200.0, dpr), &c, &m, &s);
        let mut raster = Raster::default();
        paint(&c, &m, &layout, &s, &mut raster);
        assert_eq!((raster.width_px, raster.height_px), ((400.0 * dpr) as u32, (200.0 * dpr) as u32));
        let at = |p: usize| {
            let (x, y) = layout.locate(&c, &m, 0, p, "Full").unwrap();
            raster.pixel((x * dpr) as u32, (y * dpr) as u32).unwrap()
        };
        assert_eq!(at(0), [255, 0, 0, 255]);
        assert_eq!(at(1), [255, 128, 128, 255]); // level 10
        assert_eq!(at(2), NO_DATA);
        assert_eq!(at(3), [255, 0, 0, 255]);
    }
    // Heatmap off: white cells, grey no-data.
    let off = ViewState { heatmap: false, ..s };
    let layout = Layout::compute(Viewport::new(400.0, 200.0, 1.0), &c, &m, &off);
    let mut raster = Raster::default();
    paint(&c, &m, &layout, &off, &mut raster);
    let (x, y) = layout.locate(&c, &m, 0, 0, "Full").unwrap();
    assert_eq!(raster.pixel(x as u32, y as u32), Some(PLAIN));
    let (x, y) = layout.locate(&c, &m, 0, 2, "Full").unwrap();
    assert_eq!(raster.pixel(x as u32, y as u32), Some(NO_DATA));
}

#[test]
fn dense_views_keep_peaks() {
    // 40 steps × 30 layers = 1200 rows, 300 positions, in a 300×200 canvas: many cells per
    // pixel. One peak (step 17, layer 11, position 201); everything else 1, global scale.
    let c = cube(40, 30, 300, |s, l, p| Some(if (s, l, p) == (17, 11, 201) { 100.0 } else { 1.0 }));
    let s = ViewState { step: StepSelection::All, norm: Normalisation::Global, exclude0: false, ..ViewState::for_cube(&c) };
    let m = Matrix::build(&c, &s);
    assert_eq!(m.rows.len(), 1200);
    let layout = Layout::compute(Viewport::new(300.0, 200.0, 1.0), &c, &m, &s);
    assert!(layout.row_h_css < 1.0 && layout.col_w_css < 1.0);
    let mut raster = Raster::default();
    paint(&c, &m, &layout, &s, &mut raster);
    let hm = layout.heatmap;
    let red = [255u8, 0, 0, 255];
    let mut reds = Vec::new();
    for y in hm.y.ceil() as u32..(hm.y + hm.h) as u32 {
        for x in hm.x.ceil() as u32..(hm.x + hm.w) as u32 {
            if raster.pixel(x, y) == Some(red) {
                reds.push((x, y));
            }
        }
    }
    assert_eq!(reds.len(), 1, "{reds:?}");
    // It is where the cell is.
    let row = 17 * 30 + 11;
    let ey = hm.y + (row as f32 + 0.5) * layout.row_h_css;
    let ex = hm.x + (201.0 + 0.5) * layout.col_w_css;
    assert!((reds[0].0 as f32 - ex).abs() <= 1.5 && (reds[0].1 as f32 - ey).abs() <= 1.5, "{reds:?} vs ({ex}, {ey})");
}

#[test]
fn pinned_column_is_outlined() {
    let c = cube(1, 2, 10, |_, _, p| Some(p as f32));
    let s = ViewState { pin: Some(4), ..ViewState::for_cube(&c) };
    let m = Matrix::build(&c, &s);
    let layout = Layout::compute(Viewport::new(400.0, 200.0, 1.0), &c, &m, &s);
    let mut raster = Raster::default();
    paint(&c, &m, &layout, &s, &mut raster);
    let (x, y) = layout.locate(&c, &m, 0, 4, "Full").unwrap();
    let left = layout.heatmap.x + 4.0 * layout.col_w_css;
    assert_eq!(raster.pixel((left - 1.0).round() as u32, y as u32), Some(PIN));
    assert_ne!(raster.pixel(x as u32, y as u32), Some(PIN));
    // Zoomed away: no outline anywhere.
    let s = ViewState { zoom: Some(InclusiveRange { first: 6, last: 9 }), ..s };
    let layout = Layout::compute(Viewport::new(400.0, 200.0, 1.0), &c, &m, &s);
    paint(&c, &m, &layout, &s, &mut raster);
    assert!(!raster.rgba.chunks_exact(4).any(|p| p == PIN));
}

#[test]
fn rectangles_merge_runs_and_rows() {
    let mut r = Raster::new(4, 3, BACKGROUND);
    r.fill_rect(0, 0, 2, 2, [1, 2, 3, 255]);
    r.fill_rect(3, 2, 4, 3, [9, 9, 9, 255]);
    assert_eq!(rectangles(&r), [(0, 0, 2, 2, [1, 2, 3, 255]), (3, 2, 4, 3, [9, 9, 9, 255])]);
}

#[test]
fn svg_and_png_figures() {
    let c = cube(2, 4, 12, |s, l, p| if p == 5 { None } else { Some((s + l + p) as f32) });
    let s = ViewState::for_cube(&c);
    let svg = figure_svg(&c, &s, 640, 360).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("l2_distance · relative to row max (position 0 excluded) · linear"));
    assert!(svg.contains("step 0"));
    assert!(svg.matches("<rect").count() >= 4 * 12);
    // NO_DATA grey appears (position 5).
    assert!(svg.to_ascii_uppercase().contains("#D6D6D6"), "no-data cells missing");

    let png_bytes = figure_png(&c, &s, 320, 200).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (320, 200));
    assert!(buf.chunks_exact(4).any(|p| p == [255, 0, 0, 255]));
    assert!(buf.chunks_exact(4).any(|p| p == [0, 0, 0, 255]), "no text drawn");
    assert!(matches!(figure_png(&c, &s, 4, 200), Err(RenderError::Size { .. })));
}

#[test]
fn token_profile_draws_one_line_per_variant() {
    let c = cube(1, 6, 3, |_, l, p| Some((l * p) as f32));
    let s = ViewState::for_cube(&c);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (400, 300)).into_drawing_area();
        token_profile(&root, &c, &s, 2, &["Full".to_string(), "Nope".to_string()]).unwrap();
    }
    assert!(svg.contains("Full"));
    assert!(svg.contains("<polyline"));
    assert!(svg.contains("layer"));
}
