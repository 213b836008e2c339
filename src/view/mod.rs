//! The pure view model: state (serialisable to the URL hash), slicing, normalisation, colour
//! scales, layout and hit-testing. No web types; everything here is plain Rust, tested natively
//! and compiled for wasm32.
//!
//! # How the page uses it
//!
//! ```text
//! on load:          state = ViewState::from_hash(location.hash, &cube); cache.clear()
//! on hashchange:    state = ViewState::from_hash(..)
//! on input / key:   state = state.shift_layer(&cube, 1) / next_metric / …; write state.to_hash()
//!                   with history.replaceState
//! per frame:        let matrix = cache.get(&cube, &state);           // rebuilt only when data keys change
//!                   let layout = Layout::compute(Viewport::new(w, h, dpr), &cube, matrix, &state);
//!                   render::paint(&cube, matrix, &layout, &state, &mut raster);  // one putImageData
//!                   for l in layout.labels(&cube, matrix, &state) { fillText(..) }
//!                   top-k panel (when MatrixKey changes): matrix.top_positions(k, state.exclude0)
//! when idle:        cache.prepare(&cube, &state, 64)                 // until it returns true
//! on pointer move:  layout.hit_test(matrix, x, y).and_then(|h| Probe::of(&cube, matrix, &state, h))
//!                   → probe.tooltip_text() as textContent
//! on wheel:         state.zoom = zoom_about(state.zoom, matrix.n_positions,
//!                                           layout.position_at_x(x)?, factor)
//! on drag:          state.zoom = pan(state.zoom, matrix.n_positions, layout.positions_for_dx(-dx))
//! locate():         layout.locate(&cube, matrix, layer, position, variant)
//! ```
//!
//! Coordinates are CSS pixels relative to the canvas' top-left corner; the raster is in device
//! pixels (`Viewport::device_size`).

mod colour;
mod layout;
mod slice;
mod state;

pub use colour::{
    format_number, reds_colour, reds_level, Colourbar, Palette, Rgba, Tick, BACKGROUND,
    CONTINUOUS_STEPS, NO_DATA, PLAIN, REDS_LEVELS,
};
pub use layout::{
    display_token, fit, pan, step_text, visible_window, zoom_about, Align, GridGeometry, Hit,
    Label, Layout, Probe, Rect, Viewport, MIN_TOKEN_COL_W,
};
pub use slice::{
    grid_shape, intensity_of, is_image_token, GridModel, Matrix, MatrixCache, MatrixKey, RowDesc,
    RowGroup, Stats, MATRIX_CACHE_CELLS, MATRIX_CACHE_ENTRIES,
};
pub use state::{
    hash_pairs, percent_decode, percent_encode, ColourMap, GridShape, InclusiveRange, Normalisation, Scale,
    StepSelection, ViewKind, ViewState, HASH_KEYS,
};

#[cfg(test)]
mod tests;

/// Test fixtures shared with `render`'s tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::grid_cube;
}
