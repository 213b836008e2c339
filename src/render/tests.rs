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

#[test]
fn reduction_takes_the_max_of_the_cells_under_a_pixel() {
    // 5 rows × 6 positions of relative values (NaN = no data), reduced to 2 row runs × 3
    // column runs. Expected maxima worked out by hand.
    let nan = f32::NAN;
    #[rustfmt::skip]
    let rel = [
        0.1, 0.2,  nan, nan, 0.5, -3.0,
        0.3, 0.0,  nan, nan, 0.4, -0.5,
        nan, nan,  nan, 0.2, nan, nan,
        nan, 0.9,  nan, nan, nan, -2.0,
        nan, nan,  nan, nan, nan, nan,
    ];
    let rows = [(0, 2, 0, 3), (2, 5, 3, 4)];
    let cols = [(0, 2, 0, 1), (2, 4, 1, 5), (4, 6, 5, 6)];
    let mut got: Vec<Vec<f32>> = Vec::new();
    reduce_table(&rel, 6, 0, 6, &rows, &cols, |_, r| got.push(r.to_vec()));
    // Rows 0-1: max(0.1, 0.2, 0.3, 0.0) = 0.3; cols 2-3 have no data; max(0.5, -3, 0.4, -0.5) = 0.5.
    // Rows 2-4: 0.9; 0.2; only -2.0 has data: clamped to -1 (same colour as -2).
    let want = [[0.3, nan, 0.5], [0.9, 0.2, -1.0]];
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(want) {
        for (a, b) in g.iter().zip(w) {
            assert!((a.is_nan() && b.is_nan()) || a == &b, "got {got:?}, want {want:?}");
        }
    }
    // A window of positions (first = 3, 3 visible): columns 3..6 of each row.
    let mut got = Vec::new();
    reduce_table(&rel, 6, 3, 3, &[(0, 5, 0, 1)], &[(0, 1, 0, 1), (1, 3, 1, 2)], |_, r| got.push(r.to_vec()));
    assert_eq!(got, [vec![0.2, 0.5]]);
}

#[test]
fn a_single_hot_cell_survives_any_reduction() {
    // 90 rows × 70 positions of 0.1 with one cell of 1.0, drawn in 40 × 30 device pixels
    // (cells smaller than a pixel both ways) at every position of the hot cell: the pixel
    // whose cover range holds the hot cell shows it, no other does.
    let (n_rows, n) = (90usize, 70usize);
    let cols = cover_ranges(0.0, 40, 40.0 / n as f64, n);
    let rows = cover_ranges(0.0, 30, 30.0 / n_rows as f64, n_rows);
    // Every cell is covered by exactly one pixel.
    for ranges in [&cols, &rows] {
        assert_eq!(ranges[0].0, 0);
        for w in ranges.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
    }
    assert_eq!((cols.last().unwrap().1, rows.last().unwrap().1), (n, n_rows));
    let (col_runs, row_runs) = (runs(&cols), runs(&rows));
    for hot_row in (0..n_rows).step_by(7) {
        for hot_col in (0..n).step_by(3) {
            let mut rel = vec![0.1f32; n_rows * n];
            rel[hot_row * n + hot_col] = 1.0;
            let mut hot_pixels = Vec::new();
            reduce_table(&rel, n, 0, n, &row_runs, &col_runs, |rr, reduced| {
                for (j, &v) in reduced.iter().enumerate() {
                    if v == 1.0 {
                        hot_pixels.push((rr.2, col_runs[j].2));
                    } else {
                        assert_eq!(v, 0.1);
                    }
                }
            });
            let py = rows.iter().position(|&(lo, hi)| (lo..hi).contains(&hot_row)).unwrap();
            let px = cols.iter().position(|&(lo, hi)| (lo..hi).contains(&hot_col)).unwrap();
            assert_eq!(hot_pixels, [(py, px)], "hot cell ({hot_row}, {hot_col})");
        }
    }
}

#[test]
fn palette_matches_the_colour_formula() {
    use crate::view::{intensity_of, ColourMap, Palette, Scale};
    // Values: exact colour-step boundaries of every map (t = (k + 0.5) / 20 and (i + 0.5) / 1024
    // for the linear scale) and their neighbouring floats, a dense sweep, tiny, negative,
    // above 1, infinite and NaN.
    let mut rs: Vec<f32> = vec![0.0, -0.0, 1e-30, 1e-8, 5.9e-8, 6e-8, 1.0, 1.5, 7.0, f32::INFINITY, -0.25, -1.0, -9.0, f32::NAN];
    for k in 0..20 {
        rs.push((k as f32 + 0.5) / 20.0);
    }
    for i in 0..1024 {
        rs.push((i as f32 + 0.5) / 1024.0);
        rs.push(i as f32 / 2048.0 - 0.25);
    }
    for i in 0..20_000 {
        rs.push((i as f32 / 20_000.0).powi(3));
    }
    let around: Vec<f32> = rs
        .iter()
        .filter(|r| r.is_finite() && **r > 0.0)
        .flat_map(|r| [f32::from_bits(r.to_bits() - 1), f32::from_bits(r.to_bits() + 1)])
        .collect();
    rs.extend(around);
    for cmap in [ColourMap::Reds, ColourMap::Viridis, ColourMap::Magma, ColourMap::Diverging] {
        for scale in [Scale::Linear, Scale::Sqrt, Scale::Log, Scale::Percentile] {
            let p = Palette::new(cmap, scale, true);
            for &r in &rs {
                assert_eq!(p.colour(r), cmap.colour(intensity_of(scale, r)), "{cmap:?} {scale:?} r = {r:e}");
            }
            let off = Palette::new(cmap, scale, false);
            assert_eq!(off.colour(0.5), PLAIN);
            assert_eq!(off.colour(f32::NAN), NO_DATA);
        }
    }
    // The Reds levels themselves, by hand: 0.5 → level 10 = rgb(255, 128, 128); 0.024 → 0;
    // 0.026 → 1 = rgb(255, 242, 242).
    let p = Palette::new(ColourMap::Reds, Scale::Linear, true);
    assert_eq!(p.colour(0.5), [255, 128, 128, 255]);
    assert_eq!(p.colour(0.024), [255, 255, 255, 255]);
    assert_eq!(p.colour(0.026), [255, 242, 242, 255]);
}

#[test]
fn step_all_paint_shows_each_pixels_hottest_cell() {
    // 50 steps × 36 layers = 1800 rows × 100 positions, 1 everywhere except three peaks, in
    // 600 × 300 CSS px at DPR 2 (rows thinner than a device pixel). Global scale: the peaks
    // 100 (red, level 20) and 50 (level 10), everything else 1/100 (level 0, white).
    let c = cube(50, 36, 100, |s, l, p| {
        Some(match (s, l, p) {
            (3, 7, 40) => 100.0,
            (30, 2, 99) => 50.0,
            _ => 1.0,
        })
    });
    let s = ViewState { step: StepSelection::All, norm: Normalisation::Global, exclude0: false, ..ViewState::for_cube(&c) };
    let m = Matrix::build(&c, &s);
    let layout = Layout::compute(Viewport::new(600.0, 300.0, 2.0), &c, &m, &s);
    assert!(layout.row_h_css * 2.0 < 1.0, "rows must be thinner than a device pixel");
    let mut raster = Raster::default();
    paint(&c, &m, &layout, &s, &mut raster);
    let hm = layout.heatmap;
    let (x0, x1, y0, y1) = ((hm.x * 2.0) as u32, ((hm.x + hm.w) * 2.0) as u32, (hm.y * 2.0) as u32, ((hm.y + hm.h) * 2.0) as u32);
    let count = |colour: Rgba| {
        (y0..y1).flat_map(|y| (x0..x1).map(move |x| (x, y))).filter(|&(x, y)| raster.pixel(x, y) == Some(colour)).count()
    };
    let pink = [255, 128, 128, 255];
    // The peaks cover a device column each (cells are wider than a pixel) and one device row.
    let col_px = (layout.col_w_css * 2.0).round() as usize;
    assert!(count([255, 0, 0, 255]) >= col_px - 1 && count([255, 0, 0, 255]) <= col_px + 1);
    assert!(count(pink) >= col_px - 1 && count(pink) <= col_px + 1, "{} pink pixels, columns {col_px} px", count(pink));
    let at = |layer: i64, p: usize, step: usize| {
        let row = step * 36 + layer as usize;
        let x = layout.heatmap.x + (p as f32 + 0.5) * layout.col_w_css;
        let y = layout.heatmap.y + (row as f32 + 0.5) * layout.row_h_css;
        raster.pixel((x * 2.0) as u32, (y * 2.0) as u32).unwrap()
    };
    assert_eq!(at(7, 40, 3), [255, 0, 0, 255]);
    assert_eq!(at(2, 99, 30), pink);
    assert_eq!(at(20, 10, 12), [255, 255, 255, 255]);
}

#[test]
fn a_reused_raster_equals_a_fresh_one() {
    // The heatmap rectangle is not cleared between frames (the table overwrites it): painting
    // over a previous, different frame must give exactly the fresh picture.
    let c = cube(4, 6, 50, |s, l, p| if (s + l + p) % 7 == 0 { None } else { Some(((s * 3 + l * 5 + p) % 11) as f32) });
    let base = ViewState::for_cube(&c);
    let frames = [
        ViewState { step: StepSelection::All, pin: Some(7), ..base.clone() },
        ViewState { zoom: Some(InclusiveRange { first: 10, last: 20 }), ..base.clone() },
        ViewState { view: crate::view::ViewKind::Grid, ..base.clone() },
        ViewState { step: StepSelection::All, norm: Normalisation::Global, heatmap: false, ..base.clone() },
        base.clone(),
    ];
    let mut reused = Raster::default();
    for s in &frames {
        let m = Matrix::build(&c, s);
        let layout = Layout::compute(Viewport::new(500.0, 300.0, 2.0), &c, &m, s);
        paint(&c, &m, &layout, s, &mut reused);
        let mut fresh = Raster::default();
        paint(&c, &m, &layout, s, &mut fresh);
        assert!(reused == fresh, "stale pixels after {}", s.to_hash());
    }
}
