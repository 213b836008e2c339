//! The wasm-bindgen entry point, DOM wiring and the decode worker (wasm32 only).
