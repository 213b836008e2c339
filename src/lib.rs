//! # mask-impact viewer
//!
//! Reads the results of *mask-impact* experiments (one row per generation step × layer ×
//! masked token position × variant, with distance metrics) and turns them into heatmaps.
//!
//! The data flows one way: **bytes → [`ingest`] → [`cube`] → [`view`] → [`render`] → page**.
//!
//! - [`ingest`]: sans-IO decoders for Parquet (byte ranges, only the needed columns), CSV and
//!   JSON (fed chunk by chunk) producing Arrow record batches.
//! - [`cube`]: [`cube::Cube`], the compact columnar store built from those batches: dense
//!   `Float32Array` metrics laid out by prompt, step, variant, layer and position, with
//!   dictionary-encoded token text.
//! - [`view`]: the pure view model (state ↔ URL hash, slicing, normalisation, colour, layout,
//!   hit-testing). No web types; unit-tested natively.
//! - [`render`]: view → RGBA pixels, axes and colourbars, SVG/PNG figures.
//! - `web` (wasm32 only): the wasm-bindgen entry point, DOM wiring and the decode worker.
//!
//! [`synth`] generates deterministic, realistic synthetic results: the viewer's demo, the CLI's
//! `generate` subcommand and the benchmarks all use it.
//!
//! Lower layers never import higher ones.

#[cfg(not(target_arch = "wasm32"))] pub mod cli;
pub mod cube;
pub mod ingest;
pub mod render;
pub mod synth;
pub mod view;

#[cfg(target_arch = "wasm32")]
pub mod web;
