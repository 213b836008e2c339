//! Unit tests of the view model, with hand-computed expectations.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};

use super::*;
use crate::cube::{Cube, CubeBuilder, Subset};

/// One input row: (step, layer, position, variant, token, l2_distance).
type Row<'a> = (i64, i64, i64, &'a str, &'a str, Option<f32>);

pub(crate) fn cube_from(rows: &[Row]) -> Cube {
    let batch = batch_from(rows);
    let mut b = CubeBuilder::new();
    b.begin_source("test.parquet", &batch.schema()).unwrap();
    b.push_batch(&batch).unwrap();
    b.finish().unwrap()
}

/// The rows as a batch of the file's columns (cosine is l2 / 100).
fn batch_from(rows: &[Row]) -> RecordBatch {
    let col_i = |f: fn(&Row) -> i64| Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef;
    RecordBatch::try_from_iter([
        ("generation_step", col_i(|r| r.0)),
        ("layer", col_i(|r| r.1)),
        ("token_position", col_i(|r| r.2)),
        ("variant", Arc::new(StringArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())) as ArrayRef),
        ("token_masked", Arc::new(StringArray::from(rows.iter().map(|r| r.4).collect::<Vec<_>>())) as ArrayRef),
        ("l2_distance", Arc::new(Float32Array::from(rows.iter().map(|r| r.5).collect::<Vec<_>>())) as ArrayRef),
        (
            "cosine_distance",
            Arc::new(Float32Array::from(rows.iter().map(|r| r.5.map(|v| v / 100.0)).collect::<Vec<_>>())) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// A layers-view cube: steps `steps`, one variant `Full`, `layers` × `positions`, value
/// `f(step, layer, position)`.
pub(crate) fn grid_cube(steps: i64, layers: i64, positions: i64, f: impl Fn(i64, i64, i64) -> Option<f32>) -> Cube {
    let mut rows = Vec::new();
    for s in 0..steps {
        for l in 0..layers {
            for p in 0..positions {
                rows.push((s, l, p, "Full", "tok", f(s, l, p)));
            }
        }
    }
    cube_from(&rows)
}

fn close(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-5
}

fn assert_row(m: &Matrix, row: usize, expected: &[f32]) {
    let got: Vec<f32> = (0..m.n_positions).map(|p| m.intensity_at(row, p)).collect();
    assert!(got.len() == expected.len() && got.iter().zip(expected).all(|(a, b)| close(*a, *b)), "row {row}: got {got:?}, expected {expected:?}");
}

fn three_variant_cube() -> Cube {
    // Steps 0 and 3; layers 0..3; variants Full, Attn, Head_0; 4 positions.
    let mut rows = Vec::new();
    for s in [0, 3] {
        for l in 0..3 {
            for (v, k) in [("Full", 2.0), ("Attn", 1.0), ("Head_0", 0.5)] {
                for p in 0..4 {
                    rows.push((s, l, p, v, ["<s>", " a", "\n", "b"][p as usize], Some(k * (p + 1) as f32)));
                }
            }
        }
    }
    cube_from(&rows)
}

#[test]
fn defaults_follow_the_original_viewer() {
    let cube = three_variant_cube();
    let s = ViewState::for_cube(&cube);
    assert_eq!(s.step, StepSelection::One(0));
    assert_eq!(s.variant, "Full");
    assert_eq!(s.metric, "l2_distance");
    assert_eq!(s.view, ViewKind::Layers);
    assert_eq!(s.norm, Normalisation::Row);
    assert_eq!(s.scale, Scale::Linear);
    assert_eq!(s.cmap, ColourMap::Reds);
    assert!(s.exclude0 && s.heatmap);
    assert_eq!(s.prompt, None);

    // No `Full`: the first variant (in the cube's order).
    let cube = cube_from(&[(2, 0, 0, "Head_3", "a", Some(1.0)), (2, 0, 0, "Attn", "a", Some(1.0))]);
    let s = ViewState::for_cube(&cube);
    assert_eq!(s.variant, "Attn");
    assert_eq!(s.step, StepSelection::One(2));
}

#[test]
fn hash_round_trip() {
    let cube = three_variant_cube();
    let mut s = ViewState::for_cube(&cube);
    s.view = ViewKind::Heads;
    s.step = StepSelection::All;
    s.variant = "Head_0".into();
    s.metric = "cosine_distance".into();
    s.layer = 2;
    s.layers = Some(InclusiveRange { first: 1, last: 2 });
    s.norm = Normalisation::Column;
    s.scale = Scale::Percentile;
    s.clip_percentile = Some(99.5);
    s.exclude0 = false;
    s.heatmap = false;
    s.values = true;
    s.cmap = ColourMap::Magma;
    s.share = true;
    s.pin = Some(3);
    s.zoom = Some(InclusiveRange { first: 1, last: 2 });
    s.grid = Some(GridShape { rows: 2, cols: 8 });
    s.opacity = 0.25;
    s.gridlines = false;
    let hash = s.to_hash();
    assert_eq!(
        hash,
        "view=heads&step=all&variant=Head_0&metric=cosine_distance&layer=2&layers=1-2&norm=column&scale=percentile&clip=99.5&exclude0=off&heatmap=off&values=on&cmap=magma&share=on&pin=3&zoom=1-2&grid=2x8&opacity=0.25&gridlines=off"
    );
    assert_eq!(ViewState::from_hash(&format!("#{hash}"), &cube), s);
    let d = ViewState::for_cube(&cube);
    assert_eq!(ViewState::from_hash(&d.to_hash(), &cube), d);
    // serde: the same keys, typed values, and back.
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["step"], "all");
    assert_eq!(json["layer"], 2);
    assert_eq!(json["share"], true);
    let back: ViewState = serde_json::from_value(json).unwrap();
    assert_eq!(back.validated(&cube), s);
}

#[test]
fn hash_parsing_is_lenient() {
    let cube = three_variant_cube();
    let d = ViewState::for_cube(&cube);
    for junk in ["", "#", "&&&", "=", "%", "%zz=%", "nonsense", "a=b=c", "#view", "step=%FF%FE"] {
        assert_eq!(ViewState::from_hash(junk, &cube), d, "{junk:?}");
    }
    let s = ViewState::from_hash(
        "view=pie&step=7&variant=Nope&metric=speed&layer=99&norm=diag&scale=cubic&clip=0&exclude0=maybe&cmap=jet&pin=x&zoom=5-2&grid=0x3&opacity=2&unknown=1",
        &cube,
    );
    assert_eq!(s, d);
    // Valid keys among invalid ones still apply; values are percent-decoded.
    let s = ViewState::from_hash("step=3&variant=Attn&bogus=%41&scale=sqrt&layers=2", &cube);
    assert_eq!(s.step, StepSelection::One(3));
    assert_eq!(s.variant, "Attn");
    assert_eq!(s.scale, Scale::Sqrt);
    assert_eq!(s.layers, Some(InclusiveRange { first: 2, last: 2 }));
    // A zoom past the end is clamped; covering everything is no zoom.
    assert_eq!(ViewState::from_hash("zoom=2-400", &cube).zoom, Some(InclusiveRange { first: 2, last: 3 }));
    assert_eq!(ViewState::from_hash("zoom=0-400", &cube).zoom, None);
    assert_eq!(ViewState::from_hash("pin=4", &cube).pin, None);
}

#[test]
fn percent_encoding() {
    assert_eq!(percent_encode("Head 1&x=é"), "Head%201%26x%3D%C3%A9");
    assert_eq!(percent_decode("Head%201%26x%3D%C3%A9"), "Head 1&x=é");
    assert_eq!(percent_decode("100%"), "100%");
    let cube = cube_from(&[(0, 0, 0, "my var&=", "a", Some(1.0)), (0, 0, 0, "Full", "a", Some(1.0))]);
    let mut s = ViewState::for_cube(&cube);
    s.variant = "my var&=".into();
    assert_eq!(ViewState::from_hash(&s.to_hash(), &cube), s);
}

#[test]
fn keyboard_helpers() {
    let cube = three_variant_cube();
    let s = ViewState::for_cube(&cube);
    assert_eq!(s.shift_layer(&cube, 1).layer, 1);
    assert_eq!(s.shift_layer(&cube, -1).layer, 0);
    assert_eq!(s.shift_layer(&cube, 1).shift_layer(&cube, 1).shift_layer(&cube, 1).layer, 2);
    assert_eq!(s.shift_step(&cube, 1).step, StepSelection::One(3));
    assert_eq!(s.shift_step(&cube, 1).shift_step(&cube, 1).step, StepSelection::One(3));
    let all = ViewState { step: StepSelection::All, ..s.clone() };
    assert_eq!(all.shift_step(&cube, 1).step, StepSelection::One(0));
    assert_eq!(all.shift_step(&cube, -1).step, StepSelection::One(3));
    assert_eq!(s.next_metric(&cube).metric, "cosine_distance");
    assert_eq!(s.next_metric(&cube).next_metric(&cube).metric, "l2_distance");
    assert_eq!(s.next_variant(&cube).variant, "Attn");
    assert_eq!(s.next_scale().scale, Scale::Sqrt);
    assert_eq!(s.next_scale().next_scale().next_scale().next_scale().scale, Scale::Linear);
    assert_eq!(s.next_view().view, ViewKind::Grid);
    assert_eq!(s.next_view().next_view().view, ViewKind::Heads);
}

#[test]
fn slicing_keeps_missing_cells_as_no_data() {
    // Layer 0 has positions 0, 1, 3 (2 missing); layer 1 has position 1 only, holding a null.
    let cube = cube_from(&[
        (0, 0, 0, "Full", "<s>", Some(8.0)),
        (0, 0, 1, "Full", "a", Some(2.0)),
        (0, 0, 3, "Full", "c", Some(4.0)),
        (0, 1, 1, "Full", "a", None),
    ]);
    let s = ViewState::for_cube(&cube);
    let m = Matrix::build(&cube, &s);
    assert_eq!(m.n_positions, 4);
    assert_eq!(m.rows.len(), 2);
    assert!(m.value(0, 2).is_nan() && m.value(1, 0).is_nan() && m.value(1, 1).is_nan());
    assert_eq!(m.value(0, 3), 4.0);
    // Row max without position 0 is 4: [8→clamped 1, 2/4, no data, 4/4].
    assert_row(&m, 0, &[1.0, 0.5, f32::NAN, 1.0]);
    assert_row(&m, 1, &[f32::NAN; 4]);
    // Without exclude0 the max is 8.
    let m = Matrix::build(&cube, &ViewState { exclude0: false, ..s });
    assert_row(&m, 0, &[1.0, 0.25, f32::NAN, 0.5]);
}

#[test]
fn an_infinite_value_takes_the_top_colour_and_leaves_the_scale() {
    // Layer 0: [9 (position 0, excluded), 2, +inf, 4]; layer 1: [1, -inf, 2, 8].
    let vals = [[9.0, 2.0, f32::INFINITY, 4.0], [1.0, f32::NEG_INFINITY, 2.0, 8.0]];
    let cube = grid_cube(1, 2, 4, |_, l, p| Some(vals[l as usize][p as usize]));
    let s = ViewState::for_cube(&cube);
    // Row maxima over finite values: 4 and 8 (before, infinite: every non-zero cell was 1).
    let m = Matrix::build(&cube, &s);
    assert_row(&m, 0, &[1.0, 0.5, 1.0, 1.0]);
    assert_row(&m, 1, &[0.125, -1.0, 0.25, 1.0]);
    // Global: 8 over positions 1..; the 90th percentile clip over the finite |v| {2, 4, 2, 8}.
    let m = Matrix::build(&cube, &ViewState { norm: Normalisation::Global, ..s.clone() });
    assert_row(&m, 0, &[1.0, 0.25, 1.0, 0.5]);
    assert_eq!(m.reference_max, 8.0);
    let m = Matrix::build(&cube, &ViewState { norm: Normalisation::Global, clip_percentile: Some(50.0), ..s.clone() });
    // Nearest rank 50% of {2, 2, 4, 8}: the 2nd value, 2.
    assert_row(&m, 1, &[0.5, -1.0, 1.0, 1.0]);
    let m = Matrix::build(&cube, &ViewState { norm: Normalisation::Column, ..s });
    assert_row(&m, 0, &[1.0, 1.0, 1.0, 0.5]);
}

#[test]
fn column_and_global_normalisation() {
    // L0 = [10, 2, 1], L1 = [5, 4, 3]
    let vals = [[10.0, 2.0, 1.0], [5.0, 4.0, 3.0]];
    let cube = grid_cube(1, 2, 3, |_, l, p| Some(vals[l as usize][p as usize]));
    let s = ViewState::for_cube(&cube);
    let m = Matrix::build(&cube, &ViewState { norm: Normalisation::Column, ..s.clone() });
    assert_row(&m, 0, &[1.0, 0.5, 1.0 / 3.0]);
    assert_row(&m, 1, &[0.5, 1.0, 1.0]);
    // Global, position 0 excluded: max over positions 1.. = 4.
    let m = Matrix::build(&cube, &ViewState { norm: Normalisation::Global, ..s.clone() });
    assert_row(&m, 0, &[1.0, 0.5, 0.25]);
    assert_row(&m, 1, &[1.0, 1.0, 0.75]);
    assert_eq!(m.reference_max, 4.0);
    let m = Matrix::build(&cube, &ViewState { norm: Normalisation::Global, exclude0: false, ..s.clone() });
    assert_row(&m, 0, &[1.0, 0.2, 0.1]);
    assert_row(&m, 1, &[0.5, 0.4, 0.3]);
    // Layer filter keeps layer 1 only.
    let m = Matrix::build(&cube, &ViewState { layers: Some(InclusiveRange { first: 1, last: 1 }), ..s });
    assert_eq!(m.rows.len(), 1);
    assert_eq!(m.rows[0].layer, 1);
}

#[test]
fn sqrt_log_percentile_and_clip() {
    // One row: position 0 = 100 (excluded), then 0, 1, 4, NaN.
    let vals = [Some(100.0), Some(0.0), Some(1.0), Some(4.0), None];
    let cube = grid_cube(1, 1, 5, |_, _, p| vals[p as usize]);
    let s = ViewState::for_cube(&cube);
    let m = Matrix::build(&cube, &ViewState { scale: Scale::Sqrt, ..s.clone() });
    assert_row(&m, 0, &[1.0, 0.0, 0.5, 1.0, f32::NAN]);
    // log10(1 + 999·0.25) / 3 = log10(250.75) / 3 = 0.799755…
    let m = Matrix::build(&cube, &ViewState { scale: Scale::Log, ..s.clone() });
    assert_row(&m, 0, &[1.0, 0.0, 0.799_755, 1.0, f32::NAN]);
    // Ranks among {0, 1, 4}: 0 → 1/3, 1 → 2/3, 4 → 1; position 0 (100) → 3/3.
    let m = Matrix::build(&cube, &ViewState { scale: Scale::Percentile, ..s.clone() });
    assert_row(&m, 0, &[1.0, 1.0 / 3.0, 2.0 / 3.0, 1.0, f32::NAN]);

    // Clip at the 90th percentile of 1..=10 (nearest rank: the 9th value, 9).
    let cube = grid_cube(1, 1, 11, |_, _, p| Some(if p == 0 { 100.0 } else { p as f32 }));
    let m = Matrix::build(&cube, &ViewState { clip_percentile: Some(90.0), ..ViewState::for_cube(&cube) });
    assert!(close(m.intensity_at(0, 3), 3.0 / 9.0));
    assert_eq!(m.intensity_at(0, 9), 1.0);
    assert_eq!(m.intensity_at(0, 10), 1.0);
}

#[test]
fn step_all_groups_rows_by_step() {
    let cube = grid_cube(3, 2, 2, |s, l, p| Some((s * 100 + l * 10 + p) as f32));
    let s = ViewState { step: StepSelection::All, ..ViewState::for_cube(&cube) };
    let m = Matrix::build(&cube, &s);
    assert_eq!(m.rows.len(), 6);
    assert_eq!(m.groups.len(), 3);
    assert_eq!((m.groups[2].first_row, m.groups[2].n_rows, m.groups[2].step), (4, 2, 2));
    assert_eq!(m.value(5, 1), 211.0);
    assert_eq!(m.rows[5].group, 2);
}

#[test]
fn heads_view_and_share_of_full() {
    let cube = cube_from(&[
        (0, 0, 0, "Full", "a", Some(2.0)),
        (0, 0, 1, "Full", "b", Some(4.0)),
        (0, 0, 0, "Attn", "a", Some(1.0)),
        (0, 0, 1, "Attn", "b", Some(1.0)),
        (0, 0, 0, "Head_0", "a", Some(0.5)),
        (0, 0, 1, "Head_0", "b", None),
    ]);
    let s = ViewState { view: ViewKind::Heads, share: true, exclude0: false, ..ViewState::for_cube(&cube) };
    let m = Matrix::build(&cube, &s);
    assert_eq!(m.rows.iter().map(|r| r.variant).collect::<Vec<_>>(), [0, 1, 2]);
    let vals: Vec<Vec<f32>> = (0..3).map(|r| (0..2).map(|p| m.value(r, p)).collect()).collect();
    assert_eq!(vals[0], [1.0, 1.0]);
    assert_eq!(vals[1], [0.5, 0.25]);
    assert!(vals[2][0] == 0.25 && vals[2][1].is_nan());
    let hit = Hit { row: 1, position: 1 };
    let probe = Probe::of(&cube, &m, &s, hit).unwrap();
    assert_eq!((probe.value, probe.raw_value), (Some(0.25), Some(1.0)));
    assert_eq!(probe.variant, "Attn");
}

#[test]
fn colour_levels() {
    assert_eq!(REDS_LEVELS, 21);
    assert_eq!(reds_colour(0), [255, 255, 255, 255]);
    assert_eq!(reds_colour(10), [255, 128, 128, 255]); // 127.5 rounds up
    assert_eq!(reds_colour(1), [255, 242, 242, 255]); // 255·19/20 = 242.25
    assert_eq!(reds_colour(20), [255, 0, 0, 255]);
    assert_eq!(reds_level(0.0), 0);
    assert_eq!(reds_level(0.524), 10);
    assert_eq!(reds_level(0.526), 11);
    assert_eq!(reds_level(1.0), 20);
    assert_eq!(ColourMap::Reds.colour(1.0), [255, 0, 0, 255]);
    assert_eq!(ColourMap::Viridis.colour(0.0), [0x44, 0x01, 0x54, 255]);
    assert_eq!(ColourMap::Viridis.colour(1.0), [0xfd, 0xe7, 0x25, 255]);
    assert_eq!(ColourMap::Magma.colour(0.5), [0xb5, 0x36, 0x7a, 255]);
    assert_eq!(ColourMap::Diverging.colour(0.0), [0xf7, 0xf7, 0xf7, 255]);
    assert_eq!(ColourMap::Diverging.colour(-1.0), [0x21, 0x66, 0xac, 255]);
    for c in [ColourMap::Reds, ColourMap::Viridis, ColourMap::Magma, ColourMap::Diverging] {
        assert_eq!(c.colour(f32::NAN), NO_DATA);
        for i in 0..=100 {
            assert_ne!(c.colour(i as f32 / 100.0), NO_DATA, "{c:?} at {i}%");
        }
    }
}

#[test]
fn colourbar_caption_and_ticks() {
    let cube = grid_cube(1, 1, 3, |_, _, p| Some(p as f32));
    let s = ViewState { scale: Scale::Sqrt, ..ViewState::for_cube(&cube) };
    let m = Matrix::build(&cube, &s);
    let bar = Colourbar::describe(&m, &s, "l2_distance");
    assert_eq!(bar.caption, "l2_distance · relative to row max (position 0 excluded) · sqrt");
    assert_eq!(bar.ticks[2].label, "0.5");
    assert!(close(bar.ticks[2].at, 0.5f32.sqrt()));
    assert_eq!(bar.ticks[4].label, "1 × max");
    let g = ViewState { norm: Normalisation::Global, exclude0: false, ..s };
    let m = Matrix::build(&cube, &g);
    let bar = Colourbar::describe(&m, &g, "l2_distance");
    assert_eq!(bar.caption, "l2_distance · global scale · sqrt");
    assert_eq!(bar.ticks.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(), ["0", "0.5", "1", "1.5", "2"]);
}

#[test]
fn hit_test_and_locate_are_inverse() {
    let cube = grid_cube(1, 5, 40, |_, l, p| Some((l + p) as f32));
    for (zoom, dpr) in [(None, 1.0), (Some(InclusiveRange { first: 10, last: 29 }), 2.0)] {
        let s = ViewState { zoom, ..ViewState::for_cube(&cube) };
        let m = Matrix::build(&cube, &s);
        let layout = Layout::compute(Viewport::new(700.0, 400.0, dpr), &cube, &m, &s);
        let (first, n) = visible_window(zoom, 40);
        for layer in 0..5 {
            for p in 0..40 {
                let c = layout.locate(&cube, &m, layer, p, "Full");
                if p < first || p >= first + n {
                    assert_eq!(c, None);
                    continue;
                }
                let (x, y) = c.unwrap();
                assert_eq!(layout.hit_test(&m, x, y), Some(Hit { row: layer as usize, position: p }));
                // The whole cell (just inside its corners) maps back to it.
                let (hw, hh) = (layout.col_w_css / 2.0 - 0.01, layout.row_h_css / 2.0 - 0.01);
                assert_eq!(layout.hit_test(&m, x - hw, y - hh), Some(Hit { row: layer as usize, position: p }));
                assert_eq!(layout.hit_test(&m, x + hw, y + hh), Some(Hit { row: layer as usize, position: p }));
            }
        }
        let hm = layout.heatmap;
        assert_eq!(layout.hit_test(&m, hm.x - 0.01, hm.y + 1.0), None);
        assert_eq!(layout.hit_test(&m, hm.x + hm.w, hm.y + 1.0), None);
        assert_eq!(layout.hit_test(&m, hm.x + 1.0, hm.y + hm.h), None);
        assert_eq!(layout.hit_test(&m, hm.x + 1.0, hm.y - 0.01), None);
        assert_eq!(layout.hit_test(&m, hm.x, hm.y), Some(Hit { row: 0, position: first }));
        assert_eq!(layout.locate(&cube, &m, 99, 0, "Full"), None);
        assert_eq!(layout.locate(&cube, &m, 0, 0, "Attn"), None);
    }
}

#[test]
fn grid_view_geometry() {
    // <s>, <|vision_start|>, 256 × <|image_pad|>, <|vision_end|>, "What", " hair"
    let mut tokens = vec!["<s>", "<|vision_start|>"];
    tokens.extend(std::iter::repeat_n("<|image_pad|>", 256));
    tokens.extend(["<|vision_end|>", "What", " hair"]);
    let rows: Vec<Row> = tokens.iter().enumerate().map(|(p, t)| (0, 0, p as i64, "Full", *t, Some(p as f32))).collect();
    let cube = cube_from(&rows);
    let s = ViewState { view: ViewKind::Grid, ..ViewState::for_cube(&cube) };
    let m = Matrix::build(&cube, &s);
    let g = m.grid.as_ref().unwrap();
    assert_eq!((g.rows, g.cols), (16, 16));
    assert_eq!(g.image_positions.len(), 256);
    assert_eq!(g.image_positions[0], 2);
    assert_eq!(g.text_positions, [0, 1, 258, 259, 260]);
    // Image scale: first image token (position 2) excluded → max 257.
    assert_eq!(m.intensity_at(0, 257), 1.0);
    assert!(close(m.intensity_at(0, 129), 129.0 / 257.0));
    // Text scale: position 0 excluded → max 260.
    assert!(close(m.intensity_at(0, 258), 258.0 / 260.0));
    assert_eq!(g.image_stats.max, Some(257.0));
    assert_eq!(g.image_stats.mean, Some((2.0 + 257.0) / 2.0));

    let layout = Layout::compute(Viewport::new(800.0, 700.0, 1.0), &cube, &m, &s);
    for k in 0..240 {
        let p = 2 + k;
        let (x0, y0) = layout.locate(&cube, &m, 0, p, "Full").unwrap();
        let (x1, y1) = layout.locate(&cube, &m, 0, p + 16, "Full").unwrap();
        assert!(close(x0, x1) && close(y1 - y0, layout.col_w_css), "token {k} and {}", k + 16);
        assert_eq!(layout.hit_test(&m, x0, y0), Some(Hit { row: 0, position: p }));
    }
    for &p in &g.text_positions {
        let (x, y) = layout.locate(&cube, &m, 0, p, "Full").unwrap();
        assert_eq!(layout.hit_test(&m, x, y), Some(Hit { row: 0, position: p }));
    }
    // Override.
    let s2 = ViewState { grid: Some(GridShape { rows: 8, cols: 32 }), ..s };
    let m2 = Matrix::build(&cube, &s2);
    assert_eq!((m2.grid.as_ref().unwrap().rows, m2.grid.as_ref().unwrap().cols), (8, 32));
}

#[test]
fn image_tokens_and_grid_shapes() {
    for t in ["<|image_pad|>", "<vision_token_3>", "<image>", "img_12", "<vision_start_patch>"] {
        assert!(is_image_token(t), "{t}");
    }
    for t in ["<|vision_start|>", "<|vision_end|>", "image", " img_", "<s>"] {
        assert!(!is_image_token(t), "{t}");
    }
    assert_eq!(grid_shape(256), (16, 16));
    assert_eq!(grid_shape(1024), (32, 32));
    assert_eq!(grid_shape(10), (3, 4));
    assert_eq!(grid_shape(257), (16, 17));
    assert_eq!(grid_shape(1), (1, 1));
    assert_eq!(grid_shape(0), (0, 0));
}

#[test]
fn token_labels_are_made_visible() {
    assert_eq!(display_token("\n", 12), "↵");
    assert_eq!(display_token(" color", 12), "·color");
    assert_eq!(display_token("\tx", 12), "→x");
    assert_eq!(display_token(".\n", 12), ".↵");
    assert_eq!(display_token("", 12), "∅");
    assert_eq!(display_token("abcdefghijklmnop", 12), "abcdefghijk…");
    assert_eq!(display_token("<|image_pad|>", 12), "<|image_pad…");
    assert_eq!(format_number(0.123456), "0.1235");
    assert_eq!(format_number(1234.6), "1235");
    assert_eq!(format_number(2.0), "2");
}

#[test]
fn tooltip_text() {
    let cube = cube_from(&[(0, 7, 0, "Full", " hair", Some(0.12344)), (0, 7, 1, "Full", "?", None)]);
    let s = ViewState::for_cube(&cube);
    let m = Matrix::build(&cube, &s);
    let p = Probe::of(&cube, &m, &s, Hit { row: 0, position: 0 }).unwrap();
    assert_eq!(p.value, Some(0.12344));
    assert_eq!(p.token.as_deref(), Some(" hair"));
    assert_eq!(p.tooltip_text(), "l2_distance: 0.1234\nlayer 7 · position 0\ntoken “ hair” (5 chars)\nstep 0 · variant Full");
    let p = Probe::of(&cube, &m, &s, Hit { row: 0, position: 1 }).unwrap();
    assert_eq!(p.value, None);
    assert!(p.tooltip_text().starts_with("l2_distance: no data\n"));
    assert_eq!(Probe::of(&cube, &m, &s, Hit { row: 5, position: 0 }), None);
}

#[test]
fn zoom_and_pan() {
    let z = zoom_about(None, 1000, 500.0, 0.5);
    assert_eq!(z, Some(InclusiveRange { first: 250, last: 749 }));
    // Anchor at the left quarter stays at the left quarter: 100 + 0.25·(400−200) …
    let z2 = zoom_about(Some(InclusiveRange { first: 0, last: 399 }), 1000, 100.0, 0.5);
    assert_eq!(z2, Some(InclusiveRange { first: 50, last: 249 }));
    assert_eq!(pan(z, 1000, 100.0), Some(InclusiveRange { first: 350, last: 849 }));
    assert_eq!(pan(z, 1000, 1e9), Some(InclusiveRange { first: 500, last: 999 }));
    assert_eq!(pan(z, 1000, -1e9), Some(InclusiveRange { first: 0, last: 499 }));
    assert_eq!(zoom_about(z, 1000, 500.0, 4.0), None);
    assert_eq!(zoom_about(None, 1000, 3.0, 1e-9), Some(InclusiveRange { first: 3, last: 4 }));
    assert_eq!(pan(None, 1000, 10.0), None);
    assert_eq!(fit(), None);

    // The position under the pointer is the zoom anchor.
    let cube = grid_cube(1, 2, 100, |_, _, p| Some(p as f32));
    let s = ViewState::for_cube(&cube);
    let m = Matrix::build(&cube, &s);
    let layout = Layout::compute(Viewport::new(600.0, 300.0, 1.0), &cube, &m, &s);
    let (x, _) = layout.locate(&cube, &m, 0, 30, "Full").unwrap();
    assert!((layout.position_at_x(x).unwrap() - 30.5).abs() < 1e-3);
}

#[test]
fn labels_show_tokens_when_columns_are_wide() {
    let cube = cube_from(&[(0, 0, 0, "Full", "\n", Some(1.0)), (0, 0, 1, "Full", " a", Some(2.0))]);
    let s = ViewState { values: true, ..ViewState::for_cube(&cube) };
    let m = Matrix::build(&cube, &s);
    let layout = Layout::compute(Viewport::new(400.0, 300.0, 1.0), &cube, &m, &s);
    assert!(layout.show_tokens);
    let texts: Vec<String> = layout.labels(&cube, &m, &s).into_iter().map(|l| l.text).collect();
    for t in ["↵", "·a", "0", "1", "1.0000", "2.0000"] {
        assert!(texts.iter().any(|x| x == t), "{t} missing from {texts:?}");
    }
    // 2000 positions in 400 px: no token texts.
    let cube = grid_cube(1, 1, 2000, |_, _, _| Some(1.0));
    let m = Matrix::build(&cube, &s);
    let layout = Layout::compute(Viewport::new(400.0, 300.0, 1.0), &cube, &m, &s);
    assert!(!layout.show_tokens);
}

/// The real file (read from `../shared`, never copied): Qwen-VL tokens, one
/// `<|vision_start|>` marker then 256 `<|image_pad|>` at positions 4..=259. Expected values from
/// pandas: step 0, layer 10, Full, l2_distance over the image tokens: max 0.1318, mean 0.115485.
#[test]
fn real_file_grid_is_16_by_16() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real/image_question_hair.parquet");
    let cube = crate::ingest::read_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let s = ViewState::from_hash("view=grid&layer=10", &cube);
    assert_eq!((s.step, s.variant.as_str(), s.metric.as_str()), (StepSelection::One(0), "Full", "l2_distance"));
    let m = Matrix::build(&cube, &s);
    let g = m.grid.as_ref().unwrap();
    assert_eq!((g.rows, g.cols), (16, 16));
    assert_eq!((g.image_positions[0], g.image_positions[255]), (4, 259));
    assert_eq!(g.text_positions.len(), cube.prompts[0].n_positions() - 256);
    assert_eq!(g.image_stats.max, Some(0.1318));
    assert!((g.image_stats.mean.unwrap() - 0.115_485).abs() < 1e-5);
    let all = Matrix::build(&cube, &ViewState::from_hash("step=all", &cube));
    assert_eq!((all.rows.len(), all.groups.len()), (72, 2));
}

/// The percentile intensity by its definition (O(n²)): the fraction of the group's values
/// with data, cells `excluded` left out, that are `≤ v`; 1 when the group has none.
fn naive_percentile(group: &[f32], excluded: &[usize], v: f32) -> f32 {
    if v.is_nan() {
        return f32::NAN;
    }
    let members: Vec<f32> = group.iter().enumerate().filter(|(i, x)| !excluded.contains(i) && !x.is_nan()).map(|(_, &x)| x).collect();
    if members.is_empty() {
        return 1.0;
    }
    members.iter().filter(|&&x| x <= v).count() as f32 / members.len() as f32
}

/// Values with ties, both zeros, negatives and holes, position 0 large.
fn awkward(s: i64, l: i64, p: i64) -> Option<f32> {
    if p == 0 {
        return Some(50.0 + l as f32);
    }
    match (s * 7 + l * 3 + p * 5) % 11 {
        0 => None,
        1 => Some(-0.0),
        2 => Some(0.0),
        3 => Some(-1.5),
        4 => Some(2.0),
        k => Some(k as f32 * 0.25 + (p % 3) as f32),
    }
}

#[test]
fn percentile_ranks_follow_their_definition_in_every_normalisation() {
    let cube = grid_cube(3, 4, 13, awkward);
    let n = 13;
    for norm in [Normalisation::Row, Normalisation::Column, Normalisation::Global] {
        for exclude0 in [false, true] {
            let s = ViewState { step: StepSelection::All, scale: Scale::Percentile, norm, exclude0, ..ViewState::for_cube(&cube) };
            // Through the cache (per-row ranks kept) twice, and without it.
            let mut cache = MatrixCache::new();
            let cached = cache.get(&cube, &s).clone();
            let again = cache.get(&cube, &ViewState { norm, ..s.clone() }).clone();
            let direct = Matrix::build(&cube, &s);
            let n_rows = direct.rows.len();
            assert_eq!(n_rows, 12);
            for m in [&cached, &again, &direct] {
                for r in 0..n_rows {
                    for p in 0..n {
                        let v = m.value(r, p);
                        let want = match norm {
                            Normalisation::Row => {
                                let row: Vec<f32> = (0..n).map(|q| m.value(r, q)).collect();
                                naive_percentile(&row, if exclude0 { &[0] } else { &[] }, v)
                            }
                            Normalisation::Column => {
                                let col: Vec<f32> = (0..n_rows).map(|q| m.value(q, p)).collect();
                                naive_percentile(&col, &[], v)
                            }
                            Normalisation::Global => {
                                let ex: Vec<usize> = if exclude0 { (0..n_rows).map(|q| q * n).collect() } else { Vec::new() };
                                naive_percentile(&m.values, &ex, v)
                            }
                        };
                        assert!(close(m.intensity_at(r, p), want), "{norm:?} exclude0={exclude0} row {r} position {p}: got {}, want {want}", m.intensity_at(r, p));
                    }
                }
            }
        }
    }
}

#[test]
fn cached_matrices_equal_fresh_ones_for_every_data_setting() {
    // The cache shares per-row work between matrices: every combination it serves must be
    // the matrix built from scratch.
    let cube = grid_cube(3, 4, 13, awkward);
    let mut cache = MatrixCache::new();
    let base = ViewState::for_cube(&cube);
    let mut states = Vec::new();
    for step in [StepSelection::All, StepSelection::One(1)] {
        for norm in [Normalisation::Row, Normalisation::Column, Normalisation::Global] {
            for scale in [Scale::Linear, Scale::Sqrt, Scale::Log, Scale::Percentile] {
                for clip in [None, Some(80.0)] {
                    for exclude0 in [true, false] {
                        for metric in ["l2_distance", "cosine_distance"] {
                            states.push(ViewState { step, norm, scale, clip_percentile: clip, exclude0, metric: metric.into(), ..base.clone() });
                        }
                    }
                }
            }
        }
    }
    // Twice: the second pass hits the cache (entries and per-row references).
    for s in states.iter().chain(&states) {
        assert_same_matrix(cache.get(&cube, s), &Matrix::build(&cube, s), &s.to_hash());
    }
    // A different cube with the same shape is detected: no stale values.
    let other = grid_cube(3, 4, 13, |s, l, p| awkward(s, l, p).map(|v| v * 2.0 + 1.0));
    assert_same_matrix(cache.get(&other, &states[0]), &Matrix::build(&other, &states[0]), "other cube");
}

/// Equal matrices, NaN equal to NaN (bit for bit otherwise).
fn assert_same_matrix(a: &Matrix, b: &Matrix, what: &str) {
    let same = |x: &[f32], y: &[f32]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()));
    assert!(same(&a.values, &b.values), "{what}: values differ");
    assert!(same(&a.relative, &b.relative), "{what}: relative differs: {:?} vs {:?}", a.relative, b.relative);
    assert!(same(&a.column_max, &b.column_max), "{what}: column maxima differ");
    assert_eq!(a.reference_max.to_bits(), b.reference_max.to_bits(), "{what}: reference");
    assert_eq!((&a.rows, &a.groups, a.n_positions, a.scale), (&b.rows, &b.groups, b.n_positions, b.scale), "{what}");
}

#[test]
fn row_references_by_hand() {
    // Row [10 (position 0), 4, NaN, -8, 2]: max |v| without position 0 is 8, with it 10.
    let vals = [Some(10.0), Some(4.0), None, Some(-8.0), Some(2.0)];
    let cube = grid_cube(1, 1, 5, |_, _, p| vals[p as usize]);
    let s = ViewState::for_cube(&cube);
    let mut cache = MatrixCache::new();
    let m = cache.get(&cube, &s);
    assert_eq!(m.reference_max, 8.0);
    assert_row(m, 0, &[1.0, 0.5, f32::NAN, -1.0, 0.25]);
    assert_eq!(m.relative[0], 10.0 / 8.0);
    let m = cache.get(&cube, &ViewState { exclude0: false, ..s.clone() });
    assert_eq!(m.reference_max, 10.0);
    assert_row(m, 0, &[1.0, 0.4, f32::NAN, -0.8, 0.2]);
    // Global = the rows' maximum; column: each cell is its column's maximum.
    let m = cache.get(&cube, &ViewState { norm: Normalisation::Global, ..s.clone() });
    assert_row(m, 0, &[1.0, 0.5, f32::NAN, -1.0, 0.25]);
    let m = cache.get(&cube, &ViewState { norm: Normalisation::Column, ..s });
    assert_row(m, 0, &[1.0, 1.0, f32::NAN, -1.0, 1.0]);
}

#[test]
fn top_positions_by_hand() {
    // Two layers: maxima per position over the rows: p0 9, p1 3, p2 7, p3 none, p4 7.
    let cube = grid_cube(1, 2, 5, |_, l, p| match (l, p) {
        (_, 3) => None,
        (0, 0) => Some(9.0),
        (1, 0) => Some(1.0),
        (0, 1) => Some(3.0),
        (1, 1) => Some(-2.0),
        (0, 2) => Some(7.0),
        (1, 2) => Some(6.0),
        (0, 4) => Some(5.0),
        _ => Some(7.0),
    });
    let m = Matrix::build(&cube, &ViewState::for_cube(&cube));
    assert_eq!(m.top_positions(10, false), [(0, 9.0), (2, 7.0), (4, 7.0), (1, 3.0)]);
    assert_eq!(m.top_positions(2, true), [(2, 7.0), (4, 7.0)]);
    assert!(m.column_max[3].is_nan());
}

#[test]
fn the_cache_keeps_recent_matrices() {
    let cube = grid_cube(2, 3, 4, |s, l, p| Some((s + l + p) as f32));
    let s0 = ViewState::for_cube(&cube);
    let s1 = ViewState { metric: "cosine_distance".into(), ..s0.clone() };
    let mut cache = MatrixCache::new();
    let a = cache.get(&cube, &s0).values.as_ptr();
    let b = cache.get(&cube, &s1).values.as_ptr();
    assert_ne!(a, b);
    // Back to the first selection: the same matrix (same buffer), not rebuilt.
    assert_eq!(cache.get(&cube, &s0).values.as_ptr(), a);
    cache.clear();
    assert_same_matrix(cache.get(&cube, &s0), &Matrix::build(&cube, &s0), "after clear");
}

#[test]
fn percentile_ranks_of_long_rows_with_ties() {
    // 300 positions (the long-row sort path), values in a few tie groups with both zeros and
    // negatives; checked against the definition.
    let cube = grid_cube(1, 2, 300, |_, l, p| match (p * 37 + l) % 9 {
        0 => None,
        1 => Some(-0.0),
        2 => Some(0.0),
        k => Some((k as f32 - 5.0) * 1.5),
    });
    for exclude0 in [false, true] {
        let s = ViewState { scale: Scale::Percentile, exclude0, ..ViewState::for_cube(&cube) };
        let m = MatrixCache::new().get(&cube, &s).clone();
        for r in 0..2 {
            let row: Vec<f32> = (0..300).map(|q| m.value(r, q)).collect();
            for p in 0..300 {
                let want = naive_percentile(&row, if exclude0 { &[0] } else { &[] }, row[p]);
                assert!(close(m.intensity_at(r, p), want), "row {r} position {p}");
            }
        }
    }
}

#[test]
fn prepare_works_ahead_in_slices_and_changes_nothing() {
    let cube = grid_cube(3, 4, 13, awkward);
    let s = ViewState { step: StepSelection::All, scale: Scale::Percentile, ..ViewState::for_cube(&cube) };
    let mut cache = MatrixCache::new();
    // 2 metrics × 3 steps × 4 layers = 24 rows, 10 per call.
    assert!(!cache.prepare(&cube, &s, 10));
    assert!(!cache.prepare(&cube, &s, 10));
    assert!(cache.prepare(&cube, &s, 10));
    assert!(cache.prepare(&cube, &s, 0));
    for metric in ["l2_distance", "cosine_distance"] {
        for exclude0 in [true, false] {
            let t = ViewState { metric: metric.into(), exclude0, ..s.clone() };
            assert_same_matrix(cache.get(&cube, &t), &Matrix::build(&cube, &t), metric);
            let t = ViewState { scale: Scale::Linear, ..t };
            assert_same_matrix(cache.get(&cube, &t), &Matrix::build(&cube, &t), metric);
        }
    }
}

#[test]
fn early_view_subset_is_the_variant_and_metric_the_hash_shows() {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // First-seen order; the defaults follow the view's own rules (`Full`, `l2_distance`).
    let variants = names(&["Head_1", "Attn", "Full", "Head_0"]);
    let metrics = names(&["l2_distance", "cosine_distance", "extra"]);
    let needs = |hash: &str| ViewState::early_view_subset(hash, &variants, &metrics);
    let want = |v: Option<&[&str]>, m: &str| Subset { variants: v.map(names), metrics: Some(vec![m.to_string()]) };
    assert_eq!(needs(""), want(Some(&["Full"]), "l2_distance"));
    assert_eq!(needs("#variant=Head_1&metric=extra"), want(Some(&["Head_1"]), "extra"));
    // Names the rows do not have fall back to the defaults, as `from_hash` does.
    assert_eq!(needs("#variant=Head_9&metric=nope"), want(Some(&["Full"]), "l2_distance"));
    // The heads view shows every variant; a pin adds the token profile's Full and Attn.
    assert_eq!(needs("#view=heads&metric=cosine_distance"), want(None, "cosine_distance"));
    assert_eq!(needs("#variant=Head_0&pin=7"), want(Some(&["Head_0", "Full", "Attn"]), "l2_distance"));
    assert_eq!(needs("#variant=Attn&pin=7"), want(Some(&["Attn", "Full"]), "l2_distance"));
    assert_eq!(needs("#pin=7&pin=none"), want(Some(&["Full"]), "l2_distance"));
    // Without Full, the first variant in the view's order.
    let no_full = names(&["Head_1", "Head_0"]);
    assert_eq!(ViewState::early_view_subset("", &no_full, &metrics).variants, Some(names(&["Head_0"])));
}

#[test]
fn a_snapshot_of_a_subset_has_its_variants_and_metrics_values() {
    // Step 0 and 1, layers 0..2, variants Full, Attn, Head_0, 3 positions; l2 = 100 s + 10 l +
    // p + a variant's offset (Full 0.25, Attn 0.5, Head_0 0.75), cosine = l2 / 100.
    let mut rows = Vec::new();
    for s in 0..2 {
        for l in 0..2 {
            for (v, k) in [("Head_0", 0.75), ("Full", 0.25), ("Attn", 0.5)] {
                for p in 0..3 {
                    rows.push((s, l, p, v, "t", Some((100 * s + 10 * l + p) as f32 + k)));
                }
            }
        }
    }
    let batch = batch_from(&rows);
    let mut b = CubeBuilder::new();
    b.begin_source("t.parquet", &batch.schema()).unwrap();
    b.push_batch(&batch).unwrap();
    assert_eq!(b.variant_names(), ["Head_0", "Full", "Attn"]);
    assert_eq!(b.metric_names(), ["l2_distance", "cosine_distance"]);
    let keep = Subset { variants: Some(vec!["Attn".into(), "Head_0".into()]), metrics: Some(vec!["cosine_distance".into()]) };
    let c = b.snapshot_of(&keep).unwrap();
    // Axes: every step and layer; the kept variants in the view's order; one metric.
    assert_eq!((c.steps.clone(), c.layers.clone()), (vec![0, 1], vec![0, 1]));
    assert_eq!(c.variants, ["Attn", "Head_0"]);
    assert_eq!(c.metrics.len(), 1);
    assert_eq!(c.metrics[0].name, "cosine_distance");
    assert_eq!(c.rows_read, 36);
    for (s, step) in [0i64, 1].into_iter().enumerate() {
        for l in 0..2usize {
            for (vi, k) in [(0, 0.5f32), (1, 0.75)] {
                for p in 0..3usize {
                    let want = ((100 * step + 10 * l as i64 + p as i64) as f32 + k) / 100.0;
                    let got = c.value(0, c.cell(0, s, vi, l), p);
                    assert!(got.is_some_and(|g| (g - want).abs() < 1e-6), "step {step} layer {l} variant {vi} position {p}: {got:?}, want {want}");
                }
            }
        }
    }
    // Nothing kept apart: the whole snapshot.
    let all = b.snapshot_of(&Subset::default()).unwrap();
    assert_eq!((all.variants.len(), all.metrics.len()), (3, 2));
}

#[test]
fn early_view_variants_are_those_the_view_may_show() {
    let v = |x: &[&str]| Some(x.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(ViewState::early_view_variants(""), v(&["Full"]));
    assert_eq!(ViewState::early_view_variants("#variant=Head_3&step=2"), v(&["Head_3", "Full"]));
    assert_eq!(ViewState::early_view_variants("#variant=Full&pin=4"), v(&["Full", "Attn"]));
    assert_eq!(ViewState::early_view_variants("#variant=Head_1&pin=4&variant=Attn"), v(&["Attn", "Full"]));
    assert_eq!(ViewState::early_view_variants("#view=heads&variant=Attn"), None);
    // Where a file has rows of any of them, the view those rows give is the view all the rows
    // give (the default is Full, else the first in order, which is Attn where there is no Full).
    for hash in ["", "#variant=Head_3", "#pin=2", "#variant=Attn&pin=0"] {
        let candidates = ViewState::early_view_variants(hash).unwrap();
        for variants in [vec!["Full", "Attn", "Head_3"], vec!["Attn", "Head_3"], vec!["Head_3", "Full"]] {
            let variants: Vec<String> = variants.iter().map(|s| s.to_string()).collect();
            let all = ViewState::early_view_subset(hash, &variants, &["l2_distance".to_string()]);
            let of_candidates: Vec<String> = variants.iter().filter(|v| candidates.contains(v)).cloned().collect();
            if of_candidates.is_empty() {
                continue;
            }
            // Rows of some candidate: the view made of them is the view of all the rows.
            let some = ViewState::early_view_subset(hash, &of_candidates, &["l2_distance".to_string()]);
            assert_eq!(some, all, "{hash} on {variants:?}");
        }
    }
}
