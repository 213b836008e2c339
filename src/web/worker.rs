//! The decode worker: its own wasm instance, reading `File`/`Blob` byte ranges with
//! `Blob.slice(…).arrayBuffer()` and driving the sans-IO [`Ingest`](crate::ingest::Ingest).
//!
//! The reads are asynchronous so that the browser reads ahead while the worker decodes: the
//! ranges of one request are read side by side (Parquet column chunks), and for CSV and JSON the
//! next [`READ_AHEAD_CHUNKS`] chunks ([`Ingest::read_ahead`]) are being read while one is
//! decoded. (`FileReaderSync` made reading and decoding take turns: a 612 MiB CSV spent 1.2 to
//! 2.2 s waiting for its bytes.) CSV and JSON chunks are read by the page (`read` → `data`):
//! a `Blob` read is copied into the reading thread as it arrives, and the page's thread is idle
//! during a load while this one decodes (measured on a 1.2 GB JSON: 1.3 to 1.5 s less than
//! reading here, with the same read-ahead).
//!
//! Messages (plain objects, `type` selects):
//!
//! | direction     | `type`     | fields                                                           |
//! |---------------|------------|------------------------------------------------------------------|
//! | worker → page | `ready`    | (sent once the handler is installed)                             |
//! | page → worker | `open`     | `id`, `blobs` (array of `Blob`/`File`), `names` (array of text), `step` (the step the view shows: a number, `"all"` or absent), `hash` (the page's location hash: the view an early view shows) |
//! | page → worker | `demo`     | `id`                                                             |
//! | page → worker | `panic`    | `id`: the worker panics (tests of the crash handling)           |
//! | page → worker | `warm`     | (once per page, to the first worker while no file is asked for) decode the warm-up samples ([`warmup`]) |
//! | worker → page | `warm`     | `id` (`"warm"`), `cube`, `values`: the last Parquet sample's cube, for the page's warm-up (messages of the warm-up's reading carry this id too; the page ignores them) |
//! | worker → page | `warm-done`| `id` (`"warm"`): every sample was decoded (the page marks `mi-warm-end`) |
//! | worker → page | `read`     | `id`, `file` (index in `blobs`), `start`, `end`: read these bytes for me (CSV, JSON) |
//! | page → worker | `data`     | `id`, `file`, `start`, and `buffer` (an `ArrayBuffer`, transferred) or `error` (text) |
//! | worker → page | `progress` | `id`, `file`, `bytesRead`, `bytesTotal`, `rows` (all files)      |
//! | worker → page | `preview`  | `id`, `cube`, `rows`: the rows read so far, once they hold the whole step the view shows (files sorted by step; Parquet row groups holding that step are read first, and meanwhile only their rows of the variants the view may show go into the early cube: [`Ingest::with_early_view`]), with only the variants and the metric that view shows ([`ViewState::early_view_subset`]) |
//! | worker → page | `done`     | `id`, `cube` and `values` (`ArrayBuffer`s, transferred: [`Cube::to_transfer`]), `rows`, `timings` (`readMs`, `layoutMs`, `ipcMs`) |
//! | worker → page | `error`    | `id`, `message` (the ingest error text, naming the file)        |
//!
//! Any request stops a warm-up under way. A panic aborts the instance; the page sees the
//! worker's `error` event and starts a new one.

use bytes::Bytes;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, DedicatedWorkerGlobalScope, MessageEvent};

use super::warmup;
use crate::cube::{Cube, CubeBuilder};
use crate::ingest::{Format, Ingest, IngestError, Poll};
use crate::synth::{self, SynthConfig};
use crate::view::ViewState;

/// Least time between two progress messages.
const PROGRESS_INTERVAL_MS: f64 = 100.0;

/// CSV and JSON chunks being read while one is decoded (3 × 8 MiB in flight).
const READ_AHEAD_CHUNKS: usize = 3;

/// Parquet ranges (column chunks) this near each other are read as one span (the bytes
/// between them read too): a `Blob.slice` costs about half a millisecond, a range per column
/// chunk took 12 ms of a 34-variant file's first view.
const READ_GAP_BYTES: u64 = 256 * 1024;

/// The longest span read at once.
const READ_SPAN_BYTES: u64 = 64 * 1024 * 1024;

/// CSV and JSON chunks of the warm-up's samples ([`Reads::Here`]): small enough that a request
/// waits little for the chunk under way, large enough that the reads (a `Blob.slice` each, about
/// half a millisecond) are few.
const WARM_UP_CHUNK_BYTES: u64 = 256 * 1024;

/// Entry point of the worker's instance (called by the loader's worker script).
#[cfg_attr(feature = "web-worker", wasm_bindgen)]
pub fn worker_main() {
    console_error_panic_hook::set_once();
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        on_message(event.data());
    });
    scope.set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    handler.forget();
    post(&message(&[("type", "ready".into())]), None);
}

/// A plain object from `(key, value)` pairs.
pub(crate) fn message(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (k, v) in fields {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&obj, &JsValue::from_str(k), v);
    }
    obj.into()
}

/// Read a property (undefined when absent).
pub(crate) fn field(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// Posts `msg`, transferring the buffers in the array `transfer`.
pub(super) fn post(msg: &JsValue, transfer: Option<&JsValue>) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let result = match transfer {
        Some(t) => scope.post_message_with_transfer(msg, t),
        None => scope.post_message(msg),
    };
    if let Err(e) = result {
        web_sys::console::error_2(&"mask-impact worker: postMessage failed".into(), &e);
    }
}

fn on_message(data: JsValue) {
    match field(&data, "type").as_string().as_deref() {
        Some("data") => deliver(&data),
        Some("warm") => wasm_bindgen_futures::spawn_local(warmup::warm_up()),
        _ => {
            // A request stops a warm-up under way at its next step.
            warmup::interrupt();
            wasm_bindgen_futures::spawn_local(answer(data));
        }
    }
}

thread_local! {
    /// Reads asked of the page, by (file index, start): the resolve and reject functions of
    /// the promise their reader awaits.
    static PAGE_READS: RefCell<HashMap<(u32, u64), (Function, Function)>> = RefCell::new(HashMap::new());
}

/// A new promise and its resolve and reject functions (`Promise.withResolvers`).
pub(crate) fn promise_with_resolvers() -> (Promise, Option<(Function, Function)>) {
    let mut resolvers = None;
    // The executor runs before `Promise::new` returns.
    let promise = Promise::new(&mut |resolve, reject| resolvers = Some((resolve, reject)));
    (promise, resolvers)
}

/// Ask the page for bytes `range` of file `file` of request `id`.
fn page_read(id: &JsValue, file: u32, range: &Range<u64>) -> JsFuture {
    let (promise, resolvers) = promise_with_resolvers();
    if let Some(r) = resolvers {
        PAGE_READS.with(|m| m.borrow_mut().insert((file, range.start), r));
    }
    post(
        &message(&[
            ("type", "read".into()),
            ("id", id.clone()),
            ("file", file.into()),
            ("start", (range.start as f64).into()),
            ("end", (range.end as f64).into()),
        ]),
        None,
    );
    JsFuture::from(promise)
}

/// Hand a `data` message from the page to the read waiting for it (none: it was given up).
fn deliver(data: &JsValue) {
    let (Some(file), Some(start)) = (field(data, "file").as_f64(), field(data, "start").as_f64()) else { return };
    let Some((resolve, reject)) = PAGE_READS.with(|m| m.borrow_mut().remove(&(file as u32, start as u64))) else {
        return;
    };
    let error = field(data, "error");
    let _ = if error.is_undefined() {
        resolve.call1(&JsValue::UNDEFINED, &field(data, "buffer"))
    } else {
        reject.call1(&JsValue::UNDEFINED, &error)
    };
}

/// Answer one request (the page sends the next one only after this one's answer).
async fn answer(data: JsValue) {
    let id = field(&data, "id");
    let mut timings = Timings::default();
    let result = match field(&data, "type").as_string().as_deref() {
        Some("open") => open(&id, &data, Reads::ByPage, &mut timings, || true).await,
        Some("demo") => synth::cube(SynthConfig::demo(), "demo").map_err(|e| e.to_string()),
        // For the tests of crash handling (`maskImpact.crashDecoder()`): a real panic, which
        // aborts this instance as a bug in a decoder would.
        Some("panic") => panic!("the page asked the decoder to crash (maskImpact.crashDecoder, a test of crash handling)"),
        other => Err(format!("the decoder got an unknown request {other:?}")),
    };
    match result.and_then(|cube| post_cube("done", &id, &cube, Some(&mut timings))) {
        Ok(()) => {}
        Err(text) => post(
            &message(&[("type", "error".into()), ("id", id), ("message", text.into())]),
            None,
        ),
    }
}

/// Where the worker's time went, in ms (sent with `done`; the page logs it).
#[derive(Default)]
pub(super) struct Timings {
    /// Request to all rows read (file reads included).
    read_ms: f64,
    /// Of which reading the file.
    fetch_ms: f64,
    layout_ms: f64,
    ipc_ms: f64,
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Posts a cube (`done`, `preview` or `warm`), its bytes transferred, not copied.
pub(super) fn post_cube(kind: &str, id: &JsValue, cube: &Cube, timings: Option<&mut Timings>) -> Result<(), String> {
    let t0 = now_ms();
    let (bytes, values) = cube.to_transfer().map_err(|e| e.to_string())?;
    let array = Uint8Array::new_with_length(bytes.len() as u32);
    array.copy_from(&bytes);
    drop(bytes);
    let buffer = array.buffer();
    let transfer = Array::of1(&buffer);
    let value_buffers = Array::new();
    for v in values {
        let a = js_sys::Float32Array::new_with_length(v.len() as u32);
        a.copy_from(v);
        value_buffers.push(&a.buffer());
        transfer.push(&a.buffer());
    }
    let mut fields = vec![
        ("type", JsValue::from_str(kind)),
        ("id", id.clone()),
        ("cube", buffer.into()),
        ("values", value_buffers.into()),
        ("rows", (cube.rows_read as f64).into()),
    ];
    if let Some(t) = timings {
        t.ipc_ms = now_ms() - t0;
        fields.push((
            "timings",
            message(&[
                ("readMs", t.read_ms.into()),
                ("fetchMs", t.fetch_ms.into()),
                ("layoutMs", t.layout_ms.into()),
                ("ipcMs", t.ipc_ms.into()),
            ]),
        ));
    }
    post(&message(&fields), Some(&transfer.into()));
    Ok(())
}

/// Who reads the bytes of CSV and JSON files (Parquet's are always read here).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Reads {
    /// The page, which holds the files (see the module docs).
    ByPage,
    /// This worker (blobs made here: the warm-up's samples, read in small chunks).
    Here,
}

/// Decode every blob of the request into one cube; stops ([`IngestError::Cancelled`]) when
/// `keep_going` says no between two reads.
pub(super) async fn open(
    id: &JsValue,
    data: &JsValue,
    reads: Reads,
    timings: &mut Timings,
    keep_going: impl Fn() -> bool,
) -> Result<Cube, String> {
    let t0 = now_ms();
    // The step the page will show: read it first and show it before the rest ("all": no
    // preview; absent: the first step in the file).
    let step_field = field(data, "step");
    let view_step: Option<Option<i64>> = match step_field.as_f64() {
        Some(s) if s.fract() == 0.0 => Some(Some(s as i64)),
        _ if step_field.as_string().as_deref() == Some("all") => None,
        _ => Some(None),
    };
    let mut previewed = false;
    // The page's location hash: the view the early view shows.
    let hash = field(data, "hash").as_string().unwrap_or_default();
    // Time spent waiting for the file's bytes, apart from decoding.
    let fetch_ms = std::cell::Cell::new(0.0f64);
    let blobs: Array = field(data, "blobs").dyn_into().map_err(|_| "no files were given".to_string())?;
    let names: Array = field(data, "names").dyn_into().unwrap_or_default();
    let mut sources: Vec<(String, Blob)> = Vec::new();
    for (i, b) in blobs.iter().enumerate() {
        let blob: Blob = b.dyn_into().map_err(|_| format!("item {i} is not a file"))?;
        let name = names.get(i as u32).as_string().unwrap_or_else(|| format!("file {}", i + 1));
        sources.push((name, blob));
    }
    if sources.is_empty() {
        return Err("no files were given".to_string());
    }
    let bytes_total: f64 = sources.iter().map(|(_, b)| b.size()).sum();
    let mut bytes_before = 0.0f64;
    let mut last_post_ms = f64::NEG_INFINITY;
    let mut builder = CubeBuilder::new();
    // Reads of an earlier request that were never used.
    PAGE_READS.with(|m| m.borrow_mut().clear());
    for (file, (name, blob)) in sources.iter().enumerate() {
        let len = blob.size() as u64;
        let first_file = bytes_before == 0.0;
        let mut ingest = Ingest::with_builder(name, len, builder).with_first_step(view_step.flatten());
        if first_file {
            if let Some(variants) = view_step.and(ViewState::early_view_variants(&hash)) {
                // Parquet: the rows of the early view's variants first (see the method).
                ingest = ingest.with_early_view(variants);
            }
        }
        if reads == Reads::Here {
            // The warm-up's samples: small chunks, so that a request stops them soon (the
            // worker takes messages only between reads).
            ingest = ingest.with_text_chunk_bytes(WARM_UP_CHUNK_BYTES);
        }
        let progress = |ingest: &Ingest| {
            let p = ingest.progress();
            let b = ingest.builder();
            // Worth it while less than three quarters are read (rows where the file tells, else
            // bytes): a preview costs tens of milliseconds, the last quarter of a large file more.
            // (At "less than half", a file whose first step is half its rows, like the 2-step
            // 34-variant ones, never had an early view.)
            let early = match b.expected_rows() {
                0 => p.bytes_read.saturating_mul(4) < p.bytes_total.saturating_mul(3),
                expected => p.rows.saturating_mul(4) < expected.saturating_mul(3),
            };
            if first_file && !previewed {
                // The Parquet rows of the variants the view may show, or else the rows read so
                // far once they hold the step shown (while a preview is worth its cost); of
                // them only what the view shows (one metric, one variant but in the heads view).
                let ready = match view_step {
                    Some(Some(step)) => b.step_passed(step),
                    Some(None) => b.any_step_passed(),
                    None => false,
                };
                let rows = ingest.early_view().or((early && ready).then_some(b));
                if let Some(rows) = rows {
                    previewed = true;
                    let t1 = now_ms();
                    let subset = ViewState::early_view_subset(&hash, &rows.variant_names(), rows.metric_names());
                    let snapshot = rows.snapshot_of(&subset).map_err(|e| e.to_string());
                    let mut t = Timings { read_ms: t1 - t0, fetch_ms: fetch_ms.get(), layout_ms: now_ms() - t1, ipc_ms: 0.0 };
                    // A preview that cannot be made is no reason to stop the load.
                    if let Err(e) = snapshot.and_then(|c| post_cube("preview", id, &c, Some(&mut t))) {
                        web_sys::console::warn_1(&format!("mask-impact: no early view ({e})").into());
                    }
                }
            }
            let now = js_sys::Date::now();
            if now - last_post_ms >= PROGRESS_INTERVAL_MS {
                last_post_ms = now;
                post(
                    &message(&[
                        ("type", "progress".into()),
                        ("id", id.clone()),
                        ("file", name.as_str().into()),
                        ("bytesRead", (bytes_before + p.bytes_read as f64).into()),
                        ("bytesTotal", bytes_total.into()),
                        ("rows", (p.rows as f64).into()),
                    ]),
                    None,
                );
            }
            keep_going()
        };
        drive_blob(&mut ingest, (id, file as u32, blob, reads), &fetch_ms, progress).await.map_err(|e| e.to_string())?;
        bytes_before += len as f64;
        builder = ingest.into_builder();
    }
    let t1 = now_ms();
    timings.read_ms = t1 - t0;
    timings.fetch_ms = fetch_ms.get();
    let cube = builder.finish().map_err(|e| e.to_string());
    timings.layout_ms = now_ms() - t1;
    cube
}

/// A file of a request: the request's id, the file's index in it, the file and who reads it.
type Source<'a> = (&'a JsValue, u32, &'a Blob, Reads);

/// A read of `range` of file `file` of request `id` under way: CSV and JSON by the page (unless
/// [`Reads::Here`]), the rest (sniffing, Parquet) here.
fn start_read(ingest: &Ingest, (id, file, blob, reads): Source, range: &Range<u64>) -> Result<JsFuture, String> {
    if reads == Reads::ByPage && matches!(ingest.format(), Some(Format::Csv | Format::Json)) {
        return Ok(page_read(id, file, range));
    }
    let slice = blob
        .slice_with_f64_and_f64(range.start as f64, range.end as f64)
        .map_err(|e| js_text(&e))?;
    Ok(JsFuture::from(slice.array_buffer()))
}

/// Drive `ingest` to its end, reading `source` (request id, file index, file), as
/// [`crate::ingest::drive_with`] does with a synchronous reader; `fetch_ms` grows by the time
/// spent waiting for bytes. Stops with [`IngestError::Cancelled`] when `on_progress` returns
/// `false`.
async fn drive_blob(
    ingest: &mut Ingest,
    source: Source<'_>,
    fetch_ms: &std::cell::Cell<f64>,
    mut on_progress: impl FnMut(&Ingest) -> bool,
) -> Result<(), IngestError> {
    // Reads started before they were asked for, in the order they are expected.
    let mut ahead: VecDeque<(Range<u64>, JsFuture)> = VecDeque::new();
    loop {
        match ingest.poll()? {
            Poll::Finished => return Ok(()),
            Poll::Decoded => {}
            Poll::NeedsData(ranges) => {
                for r in &ranges {
                    ingest.check_range(r)?;
                }
                // Parquet asks for a range per column chunk: nearby ones are read at once.
                let spans = match ingest.format() {
                    Some(Format::Csv | Format::Json) => ranges.clone(),
                    _ => crate::ingest::coalesce_ranges(&ranges, READ_GAP_BYTES, READ_SPAN_BYTES),
                };
                // Start every read of the request at once, taking those already under way.
                let mut reads = Vec::with_capacity(spans.len());
                for r in &spans {
                    // Reads ahead of this one that were not asked for are dropped.
                    let taken = ahead.iter().position(|(a, _)| a == r).and_then(|i| ahead.drain(..=i).next_back());
                    let read = match taken {
                        Some((_, f)) => f,
                        None => start_read(ingest, source, r).map_err(|m| ingest.read_error(m))?,
                    };
                    reads.push(read);
                }
                // And the next chunks, while this request is decoded.
                let expected = ingest.read_ahead(READ_AHEAD_CHUNKS);
                if !expected.is_empty() {
                    ahead.retain(|(a, _)| expected.contains(a));
                    for r in expected {
                        if !ahead.iter().any(|(a, _)| *a == r) {
                            let read = start_read(ingest, source, &r).map_err(|m| ingest.read_error(m))?;
                            ahead.push_back((r, read));
                        }
                    }
                }
                let t = now_ms();
                let mut read_spans = Vec::with_capacity(reads.len());
                for (span, read) in spans.iter().zip(reads) {
                    let buffer = read.await.map_err(|e| ingest.read_error(js_text(&e)))?;
                    let bytes = Uint8Array::new(&buffer).to_vec();
                    ingest.check_data(span, &bytes)?;
                    read_spans.push(Bytes::from(bytes));
                }
                // Each range, a view of the span that holds it.
                let data = ranges
                    .iter()
                    .map(|r| {
                        let (span, bytes) = spans.iter().zip(&read_spans).find(|(s, _)| s.start <= r.start && r.end <= s.end)?;
                        Some(bytes.slice((r.start - span.start) as usize..(r.end - span.start) as usize))
                    })
                    .collect::<Option<Vec<Bytes>>>()
                    .ok_or_else(|| ingest.read_error("internal: a range outside the spans read".into()))?;
                fetch_ms.set(fetch_ms.get() + now_ms() - t);
                ingest.push(ranges, data)?;
            }
        }
        if !on_progress(ingest) {
            return Err(ingest.cancelled());
        }
    }
}

/// Text of a JS exception or value.
pub(crate) fn js_text(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}
