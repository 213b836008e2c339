//! The wasm-bindgen entry point, DOM wiring and the decode worker (wasm32 only).
//!
//! Two instances of the same wasm module run in the browser:
//!
//! - the **page** ([`start_page`]): builds the UI into `#app`, keeps the [`Cube`](crate::cube::Cube)
//!   and the [`ViewState`](crate::view::ViewState) (mirrored in the location hash), paints the
//!   heatmap on a canvas with [`render::paint`](crate::render::paint) and defines
//!   `window.maskImpact`;
//! - the **decode worker** ([`worker_main`]): reads files by byte ranges and posts the finished
//!   cube back as Arrow IPC bytes (see [`worker`] for the messages).
//!
//! The loader (`www/loader.js`) compiles the module once, then calls
//! `wasm_bindgen.start_page(module, workerUrl)`; the worker script it points to instantiates the
//! same module and calls `wasm_bindgen.worker_main()`.
//!
//! Performance marks for the benchmarks (`performance.getEntriesByName`): `mi-load-start` (file
//! input change, drop, demo, `openUrl`), `mi-data-ready` (cube received), `mi-painted` (first
//! heatmap painted) and the measure `mi-load` between the first and the last; `mi-view-start`,
//! `mi-view-painted` and the measure `mi-view` for each view change (from the input event to the
//! painted frame, so it includes the wait for `requestAnimationFrame`); the measure `mi-frame` is
//! the work of the last frame alone (slicing when the data keys changed, painting, labels,
//! panels). Only the latest of each is kept.

mod dom;
mod page;
pub mod worker;

pub use page::start_page;
pub use worker::worker_main;
