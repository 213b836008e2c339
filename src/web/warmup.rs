//! The decode worker's warm-up: once per page, while the page waits for a file, the first
//! worker decodes a few small Parquet files laid out like the files users open, through the
//! same [`open`] as a user's file, and posts the last cube to the page (`warm`), which runs its
//! view and paint code on it out of sight; then the first sample's first step written as CSV
//! and as JSON records, as pandas writes them, through the text decoders (in 256 KiB chunks);
//! then it says `warm-done`.
//!
//! Why: a browser runs a new wasm module's functions at first with a quick baseline compiler
//! (V8's Liftoff) and compiles them again with its optimising one (TurboFan) once they have run
//! enough, in the background. A user's first file was read almost wholly by the slower code: the
//! seed-scale Parquet file showed its first view 2 to 3 times later than the same file opened a
//! second time in the same page (measured in headless Chromium: early view read in 103–131 ms
//! against 34–38 ms; real fixture 111–125 against 34–38 ms). The optimised code stays with the
//! compiled module, which the page keeps and gives every worker it starts, so one warm-up per
//! page is enough. With it, the seed-scale Parquet file is painted 129 ms after it is chosen
//! (median, `cargo xtask bench`, where the file comes 200 ms after the page's API, before the
//! warm-up has ended) instead of 287 ms; chosen 2 s after, 101–108 ms (`bench/timeline.mjs`).
//! It takes about 300–400 ms of the worker's thread and 40–60 ms of the page's.
//!
//! A request from the page (a file, the demo) stops the warm-up at its next read (or, while it
//! writes the text samples, every [`TEXT_ROWS_AT_ONCE`] rows), so a file chosen at once waits
//! for at most one step of it.
//!
//! The samples (`src/web/warmup/*.parquet`, 28,800 rows each, 130 KB together) are written by
//! `src/web/warmup/make_samples.py`: pandas' defaults (snappy), the seed note's zstd recipe with
//! metric columns that fall back to plain pages, and `mask-impact convert`'s layout. Row groups
//! span several steps, so the early view reads part of one, as in large files.

use std::cell::Cell;

use js_sys::{Array, Uint8Array};
use wasm_bindgen::JsValue;
use web_sys::Blob;

use super::worker::{message, open, post, post_cube, Reads, Timings};
use crate::cube::Cube;

/// The samples, by name.
const SAMPLES: [(&str, &[u8]); 3] = [
    ("pandas-snappy.parquet", include_bytes!("warmup/pandas-snappy.parquet")),
    ("pandas-zstd.parquet", include_bytes!("warmup/pandas-zstd.parquet")),
    ("mask-impact.parquet", include_bytes!("warmup/mask-impact.parquet")),
];

thread_local! {
    /// A request came: the warm-up stops.
    static INTERRUPTED: Cell<bool> = const { Cell::new(false) };
}

/// Stop a warm-up under way (a request came).
pub(super) fn interrupt() {
    INTERRUPTED.with(|i| i.set(true));
}

fn interrupted() -> bool {
    INTERRUPTED.with(Cell::get)
}

/// Decode each Parquet sample, post the last cube to the page as `warm`, decode the text
/// samples and post `warm-done`, stopping at the first read after an [`interrupt`]. Messages it
/// posts on the way (`progress`, `preview`) carry the id `"warm"`, which is no job's: the page
/// ignores them.
pub(super) async fn warm_up() {
    let id = JsValue::from_str("warm");
    let mut cubes = Vec::with_capacity(SAMPLES.len());
    for (name, bytes) in SAMPLES {
        let Some(cube) = warm_with(&id, name, bytes).await else { return };
        cubes.push(cube);
    }
    // The page's part: Parquet is what most files are, and comes first.
    if let Some(cube) = cubes.last().filter(|_| !interrupted()) {
        if let Err(e) = post_cube("warm", &id, cube, None) {
            web_sys::console::warn_1(&format!("mask-impact: warm-up stopped: {e}").into());
            return;
        }
    }
    // Then the CSV and JSON decoders, on the first sample's rows written as pandas writes them.
    let Some(cube) = cubes.first() else { return };
    let Some((csv, json)) = texts(cube).await else { return };
    drop(cubes);
    for (name, text) in [("warm-up.csv", csv), ("warm-up.json", json)] {
        if warm_with(&id, name, text.as_bytes()).await.is_none() {
            return;
        }
    }
    post(&message(&[("type", "warm-done".into()), ("id", id)]), None);
}

/// Decodes `bytes` as the file `name` through [`open`]; `None` when interrupted or failed.
async fn warm_with(id: &JsValue, name: &str, bytes: &[u8]) -> Option<Cube> {
    if interrupted() {
        return None;
    }
    let blob = Blob::new_with_u8_array_sequence(&Array::of1(&Uint8Array::from(bytes))).ok()?;
    let request = message(&[("blobs", Array::of1(&blob).into()), ("names", Array::of1(&name.into()).into())]);
    match open(id, &request, Reads::Here, &mut Timings::default(), || !interrupted()).await {
        Ok(cube) => Some(cube),
        Err(e) => {
            if !interrupted() {
                web_sys::console::warn_1(&format!("mask-impact: warm-up stopped at {name}: {e}").into());
            }
            None
        }
    }
}

/// Rows of the text samples: one step of a sample.
const TEXT_ROWS: usize = 10_000;

/// Rows of the text samples written between two looks at the worker's messages: writing all
/// of them took about 100 ms of baseline code, which a file chosen meanwhile waited for.
const TEXT_ROWS_AT_ONCE: usize = 500;

/// Lets the worker take the messages that came in (a request, which [`interrupt`]s the
/// warm-up): waits for a read of an empty blob, which ends in a task of its own.
async fn take_messages() {
    if let Ok(blob) = Blob::new() {
        let _ = wasm_bindgen_futures::JsFuture::from(blob.array_buffer()).await;
    }
}

/// The rows of `cube`'s first step(s) ([`TEXT_ROWS`]; its first prompt, l2 and cosine) as
/// pandas writes them with `to_csv` and `to_json(orient="records")`, in the experiment's order
/// (step, layer, position, variant); `None` when a request came meanwhile (the messages are
/// taken every [`TEXT_ROWS_AT_ONCE`] rows).
async fn texts(cube: &Cube) -> Option<(String, String)> {
    let mut csv = String::from("generation_step,layer,token_masked,token_position,variant,l2_distance,cosine_distance\n");
    let mut json = String::from("[");
    let (Some(prompt), Some(l2), Some(cos)) =
        (cube.prompts.first(), cube.metric_index("l2_distance"), cube.metric_index("cosine_distance"))
    else {
        return Some((csv, json + "]"));
    };
    let mut rows = 0;
    for (s, step) in cube.steps.iter().enumerate() {
        if rows >= TEXT_ROWS {
            break;
        }
        for (l, layer) in cube.layers.iter().enumerate() {
            for p in 0..prompt.n_positions() {
                let token = prompt.token(p).unwrap_or_default();
                for (v, variant) in cube.variants.iter().enumerate() {
                    let at = cube.cell(0, s, v, l);
                    let (Some(a), Some(b)) = (cube.value(l2, at, p), cube.value(cos, at, p)) else { continue };
                    let quoted = if token.contains([',', '"', '\n', '\r']) {
                        format!("\"{}\"", token.replace('"', "\"\""))
                    } else {
                        token.to_string()
                    };
                    csv.push_str(&format!("{step},{layer},{quoted},{p},{variant},{a},{b}\n"));
                    rows += 1;
                    if rows % TEXT_ROWS_AT_ONCE == 0 {
                        take_messages().await;
                        if interrupted() {
                            return None;
                        }
                    }
                    if json.len() > 1 {
                        json.push(',');
                    }
                    json.push_str(&format!(
                        "{{\"generation_step\":{step},\"layer\":{layer},\"token_masked\":{},\"token_position\":{p},\"variant\":{},\"l2_distance\":{a},\"cosine_distance\":{b}}}",
                        serde_json::Value::from(token),
                        serde_json::Value::from(variant.as_str())
                    ));
                }
            }
        }
    }
    json.push(']');
    Some((csv, json))
}
