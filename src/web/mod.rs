//! The wasm-bindgen entry point, DOM wiring and the decode worker (wasm32 only).
//!
//! Two wasm modules are built from this crate (cargo features `web-page` and `web-worker`
//! select each one's export; `cargo xtask dist` builds both, see xtask/src/build.rs):
//!
//! - the **page** ([`start_page`], feature `web-page`): builds the UI into `#app`, keeps the
//!   [`Cube`](crate::cube::Cube) and the [`ViewState`](crate::view::ViewState) (mirrored in the
//!   location hash), paints the heatmap on a canvas with [`render::paint`](crate::render::paint)
//!   and defines `window.maskImpact`. Its module holds no ingest code (Parquet, codecs, CSV,
//!   JSON): the linker keeps only what `start_page` reaches, so it is small and ready soon;
//! - the **decode worker** ([`worker_main`], feature `web-worker`): reads files by byte ranges
//!   and posts the finished cube back as Arrow IPC bytes (see [`worker`] for the messages).
//!
//! The loader (`www/loader.js`) compiles both modules side by side, instantiates the page's and
//! calls `wasm_bindgen.start_page(workerModule, workerUrl)` (`workerModule`: the worker's
//! module or a promise of it); the worker script it points to instantiates the worker's module
//! and calls `wasm_bindgen.worker_main()`. With both features (the default) one module would
//! serve both roles.
//!
//! Performance marks for the benchmarks (`performance.getEntriesByName`): `mi-load-start` (file
//! input change, drop, demo, `openUrl`), `mi-data-ready` (cube received), `mi-painted` (first
//! heatmap painted) and the measure `mi-load` between the first and the last; `mi-view-start`,
//! `mi-view-painted` and the measure `mi-view` for each view change (from the input event to the
//! painted frame, so it includes the wait for `requestAnimationFrame`); the measure `mi-frame` is
//! the work of the last frame alone (slicing when the data keys changed, painting, labels,
//! panels); `mi-warm-start` and `mi-warm-end`: the warm-up asked of the first worker, and all of
//! it done (see [`warmup`]), and the measure `mi-warm-view`: the page's part of it (on the page's
//! thread: a file chosen meanwhile waits for it). Only the latest of each is kept.

mod dom;
mod page;
mod warmup;
pub mod worker;

pub use page::start_page;
pub use worker::worker_main;
