//! CSV and JSON, fed chunk by chunk into arrow-rs's streaming decoders (`arrow-csv`,
//! `arrow-json`). The schema is decided from the first chunk: known columns get fixed types,
//! other columns are metrics when their sampled values are all numbers.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use bytes::Bytes;

use super::fast::{skip_ws, BufferPool, FastText, Fed, Layout};
use super::orient::{ColumnsInPlace, Orient, OrientReader};
use super::{Codec, Format, Inflater, IngestError, Poll, SNIFF_BYTES, TEXT_CHUNK_BYTES};
use crate::cube::{ColumnMap, CubeBuilder};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 64 * 1024;
/// Records sampled to decide the type of unknown columns.
const SAMPLE_RECORDS: usize = 1000;
/// Bytes gathered before the schema is decided (unless the file is shorter).
pub(super) const SCHEMA_SAMPLE_BYTES: usize = 256 << 10;
/// The longest first JSON row accepted.
const MAX_FIRST_ROW_BYTES: usize = 64 << 20;

const TEXT_COLUMNS: [&str; 4] = ["token_masked", "variant", "prompt_name", "config_prompt"];
const INT_COLUMNS: [&str; 3] = ["generation_step", "layer", "token_position"];
const METRIC_COLUMNS: [&str; 2] = ["l2_distance", "cosine_distance"];

enum Decoder {
    /// The fast path for the usual layouts ([`super::fast`]); on anything unusual it hands
    /// the rest of the file to one of the general decoders below.
    Fast(Box<FastText>),
    Csv(Box<arrow_csv::reader::Decoder>),
    Json(arrow_json::reader::Decoder),
}

impl Decoder {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        match self {
            Decoder::Csv(d) => d.decode(buf),
            Decoder::Json(d) => d.decode(buf),
            // Not called: the fast decoder is driven by `TextDecoder::decode`.
            Decoder::Fast(_) => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Decoder::Csv(d) => d.flush(),
            Decoder::Json(d) => d.flush(),
            Decoder::Fast(_) => Ok(None),
        }
    }
}

/// Where a [`TextDecoder`] hands what it decodes.
pub trait BatchSink {
    /// The decoding schema, once decided from the first bytes (before any batch).
    fn begin(&mut self, schema: &SchemaRef) -> Result<(), IngestError>;
    /// One decoded record batch.
    fn batch(&mut self, batch: RecordBatch) -> Result<(), IngestError>;
}

/// CSV or JSON bytes, fed in order chunk by chunk, into Arrow record batches (no cube): the
/// decoding half of a [`TextSource`], usable on its own (the CLI decodes on one thread and
/// builds the cube on another).
pub struct TextDecoder {
    file: String,
    file_len: u64,
    format: Format,
    /// Bytes fed so far.
    bytes_fed: u64,
    /// Bytes consumed by the decoder so far (for error positions).
    bytes_read: u64,
    decoder: Option<Decoder>,
    /// The first bytes, held until the schema is known.
    head: Vec<u8>,
    /// The decoding schema, once known.
    schema: Option<SchemaRef>,
    /// CSV: the delimiter, and whether "no value" is spelled with words.
    delimiter: u8,
    null_words: bool,
    /// Whether the fast decoder may be used (see [`TextDecoder::with_fast_path`]).
    fast_path: bool,
    /// Whether the fast decoder keeps metric values as float64 (see
    /// [`TextDecoder::with_wide_metrics`]).
    wide_metrics: bool,
    /// CSV: data records read by the fast decoder before the general one took over, plus the
    /// header (added to the general decoder's line numbers in messages); 0 otherwise.
    line_offset: u64,
    /// Where the fast decoder's column buffers come from (see [`TextDecoder::with_buffer_pool`]).
    pool: BufferPool,
    /// A JSON file in another pandas orient, read as records (`decoder` then stays `None`).
    orient: Option<Box<OrientDecoder>>,
}

/// Records text written at a time by [`TextDecoder::decode_whole`].
const ROWS_IN_PLACE_BYTES: usize = 1 << 20;

/// A pandas orient other than `records` ([`super::orient`]): the file rewritten as records,
/// which a decoder of its own reads.
struct OrientDecoder {
    reader: OrientReader,
    records: TextDecoder,
    /// The records text of the latest chunk.
    text: Vec<u8>,
}

impl OrientDecoder {
    /// An error of the records decoder, said to be in this file's rows (its byte offsets are
    /// in the records text, not the file).
    fn in_rows(&self, e: IngestError) -> IngestError {
        in_orient_rows(e, self.reader.orient())
    }

    fn push(&mut self, chunk: &[u8], file: &str, sink: &mut dyn BatchSink) -> Result<(), IngestError> {
        self.text.clear();
        let read = self.reader.push(chunk, &mut self.text);
        self.records.push(&self.text, sink).map_err(|e| self.in_rows(e))?;
        read.map_err(|m| self.error(file, m))
    }

    fn finish(&mut self, file: &str, sink: &mut dyn BatchSink) -> Result<(), IngestError> {
        self.text.clear();
        self.reader.finish(&mut self.text).map_err(|m| self.error(file, m))?;
        loop {
            self.records.push(&self.text, sink).map_err(|e| self.in_rows(e))?;
            self.text.clear();
            if !self.reader.rest(&mut self.text) {
                break;
            }
        }
        self.records.finish(sink).map_err(|e| self.in_rows(e))
    }

    fn error(&self, file: &str, message: String) -> IngestError {
        orient_error(file, self.reader.orient(), message)
    }
}

/// An error of the records decoder that reads a file of `orient`, said to be in the file's
/// rows (its byte offsets are in the records text, not the file).
fn in_orient_rows(e: IngestError, orient: Orient) -> IngestError {
    match e {
        IngestError::Json { file, message } => IngestError::Json {
            file,
            message: format!("{message} (in the rows of this pandas `orient=\"{}\"` file)", orient.name()),
        },
        other => other,
    }
}

/// `message` about the layout of `file`, a JSON file of `orient`.
fn orient_error(file: &str, orient: Orient, message: String) -> IngestError {
    IngestError::Json {
        file: file.to_string(),
        message: format!("pandas `orient=\"{}\"` file: {message}", orient.name()),
    }
}

/// The CSV/JSON half of an [`Ingest`](super::Ingest).
pub struct TextSource {
    decoder: TextDecoder,
    columns: Option<ColumnMap>,
    finished: bool,
    /// Size of the chunks asked for.
    chunk_bytes: u64,
    /// A compressed file: read through a decompressor (the decoder then counts decompressed
    /// bytes).
    compressed: Option<Box<Compressed>>,
}

/// The compressed side of a [`TextSource`].
struct Compressed {
    inflater: Inflater,
    /// Size of the (compressed) file, and how much of it has been taken.
    file_len: u64,
    taken: u64,
    /// The first decompressed bytes, held until they tell CSV from JSON; `None` once told.
    head: Option<Vec<u8>>,
}

/// Decompressed `text` of a file compressed with `codec` to `decoder`, the first bytes held in
/// `head` until they tell the format (`at_end`: there is no more text).
fn feed_decompressed(
    codec: Codec,
    head: &mut Option<Vec<u8>>,
    decoder: &mut TextDecoder,
    text: &[u8],
    at_end: bool,
    sink: &mut dyn BatchSink,
) -> Result<(), IngestError> {
    let Some(held) = head.as_mut() else {
        return decoder.push(text, sink);
    };
    held.extend_from_slice(text);
    if (held.len() as u64) < SNIFF_BYTES && !at_end {
        return Ok(());
    }
    let held = head.take().unwrap_or_default();
    decoder.format = codec.sniff(&decoder.file, &held)?;
    decoder.push(&held, sink)
}

/// A [`BatchSink`] that feeds a [`CubeBuilder`].
struct CubeSink<'a> {
    file: &'a str,
    builder: &'a mut CubeBuilder,
    columns: &'a mut Option<ColumnMap>,
    /// The decoder's pool, which gets the batches' buffers back.
    pool: BufferPool,
}

impl BatchSink for CubeSink<'_> {
    fn begin(&mut self, schema: &SchemaRef) -> Result<(), IngestError> {
        *self.columns = Some(self.builder.begin_source(self.file, schema)?);
        Ok(())
    }
    fn batch(&mut self, batch: RecordBatch) -> Result<(), IngestError> {
        self.builder.push_batch(&batch)?;
        self.pool.recycle(batch);
        Ok(())
    }
}

/// The type a column gets in the decoding schema.
fn fixed_type(name: &str) -> Option<DataType> {
    let lower = name.to_ascii_lowercase();
    if TEXT_COLUMNS.contains(&lower.as_str()) {
        Some(DataType::Utf8)
    } else if INT_COLUMNS.contains(&lower.as_str()) || METRIC_COLUMNS.contains(&lower.as_str()) {
        // Integers are read as Float64 too: pandas writes `3.0` for an int column with gaps.
        Some(DataType::Float64)
    } else {
        None
    }
}

fn is_number(s: &str) -> bool {
    let s = s.trim();
    s.parse::<f64>().is_ok()
        || matches!(s.to_ascii_lowercase().as_str(), "nan" | "inf" | "-inf" | "infinity" | "-infinity")
}

fn schema_of(columns: Vec<(String, DataType)>) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    ))
}

/// Guess the CSV delimiter from the header line.
fn delimiter(sample: &[u8]) -> u8 {
    let line_end = sample.iter().position(|&b| b == b'\n').unwrap_or(sample.len());
    let line = &sample[..line_end];
    let count = |c: u8| line.iter().filter(|&&b| b == c).count();
    [b',', b'\t', b';']
        .into_iter()
        .max_by_key(|&c| (count(c), c == b','))
        .unwrap_or(b',')
}

/// Spellings of "no value" in CSV files besides the empty field (pandas `na_rep`, R's `NA`).
const CSV_NULL_WORDS: [&str; 5] = ["null", "none", "na", "n/a", "#n/a"];

/// Whether a CSV field is one of [`CSV_NULL_WORDS`] (any case).
pub(super) fn is_null_word(field: &[u8]) -> bool {
    CSV_NULL_WORDS
        .iter()
        .any(|w| w.as_bytes().eq_ignore_ascii_case(field))
}

/// The schema of a CSV file from its header and first records, and whether the records spell
/// "no value" with a word (then a null regex is needed; it slows decoding, so it is used only
/// then).
fn csv_schema(
    file: &str,
    sample: &[u8],
    delim: u8,
    at_eof: bool,
) -> Result<(SchemaRef, bool), IngestError> {
    let err = |message: String| IngestError::Csv {
        file: file.to_string(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delim)
        .flexible(true)
        .from_reader(sample);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| err(format!("the header row cannot be read: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.iter().all(|h| h.is_empty()) {
        return Err(err("the first line is not a header row of column names".into()));
    }
    let mut numeric = vec![true; headers.len()];
    let mut seen = vec![false; headers.len()];
    let mut records: Vec<csv::StringRecord> = Vec::new();
    for rec in reader.records().take(SAMPLE_RECORDS + 1) {
        match rec {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
    }
    // The last sampled record may be cut by the end of the sample.
    if !at_eof && records.len() > 1 {
        records.pop();
    }
    let mut null_words = false;
    for r in &records {
        for (i, v) in r.iter().enumerate().take(headers.len()) {
            if is_null_word(v.trim().as_bytes()) {
                null_words = true;
            } else if !v.is_empty() {
                seen[i] = true;
                numeric[i] &= is_number(v);
            }
        }
    }
    let schema = schema_of(
        headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let t = match fixed_type(h) {
                    // Known text columns (a few distinct values each) are decoded straight into
                    // dictionaries: no string array per batch, and the cube keeps the keys.
                    Some(DataType::Utf8) => {
                        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
                    }
                    Some(t) => t,
                    None if numeric[i] && seen[i] => DataType::Float64,
                    None => DataType::Utf8,
                };
                (h.clone(), t)
            })
            .collect(),
    );
    Ok((schema, null_words))
}

/// The schema of a JSON records array or JSON Lines, from the first records of `sample`.
/// `Ok(None)`: the first record is not complete yet.
fn json_schema(file: &str, sample: &[u8], at_eof: bool) -> Result<Option<SchemaRef>, IngestError> {
    use serde_json::Value;
    let err = |message: String| IngestError::Json {
        file: file.to_string(),
        message,
    };
    let text = sample.strip_prefix(b"\xef\xbb\xbf").unwrap_or(sample);
    let mut at = skip_ws(text, 0);
    let in_array = text.get(at) == Some(&b'[');
    if in_array {
        at = skip_ws(text, at + 1);
        if text.get(at) == Some(&b']') {
            return Err(err("the JSON array is empty: the file holds no data rows".into()));
        }
    }
    // Sample records: the columns are all keys seen, in first-seen order.
    let mut names: Vec<String> = Vec::new();
    // Per column: (seen a number, seen a string, seen something else).
    let mut kinds: Vec<(bool, bool, bool)> = Vec::new();
    let mut records = 0;
    while records < SAMPLE_RECORDS && at < text.len() {
        let mut stream = serde_json::Deserializer::from_slice(&text[at..]).into_iter::<Value>();
        let value = match stream.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) if e.is_eof() && !at_eof => {
                if records == 0 {
                    return Ok(None);
                }
                break;
            }
            Some(Err(e)) if records == 0 => {
                return Err(err(format!("invalid JSON in the first row: {e}")))
            }
            // A later record that is cut or wrong: the decoder will say so where it is.
            Some(Err(_)) => break,
            None => break,
        };
        at = skip_ws(text, at + stream.byte_offset());
        if in_array && matches!(text.get(at), Some(b',')) {
            at = skip_ws(text, at + 1);
        }
        let Value::Object(obj) = value else {
            return Err(err(format!(
                "expected an array of row objects (pandas `orient=\"records\"`) or JSON Lines, but {} is {}",
                if records == 0 { "the first item" } else { "an item" },
                describe(&value)
            )));
        };
        for (k, v) in &obj {
            let i = match names.iter().position(|n| n == k) {
                Some(i) => i,
                None => {
                    names.push(k.clone());
                    kinds.push((false, false, false));
                    names.len() - 1
                }
            };
            match v {
                Value::Null => {}
                Value::Number(_) => kinds[i].0 = true,
                Value::String(s) if is_number(s) => kinds[i].0 = true,
                Value::String(_) => kinds[i].1 = true,
                _ => kinds[i].2 = true,
            }
        }
        records += 1;
        if in_array && matches!(text.get(at), Some(b']')) {
            break;
        }
    }
    if records == 0 {
        return if at_eof {
            Err(err("the file holds no JSON rows".into()))
        } else {
            Ok(None)
        };
    }
    Ok(Some(schema_of(
        names
            .into_iter()
            .zip(kinds)
            .filter_map(|(k, (number, string, other))| {
                let t = fixed_type(&k).or(match (number, string, other) {
                    (_, _, true) => None,
                    (true, false, false) => Some(DataType::Float64),
                    _ => Some(DataType::Utf8),
                })?;
                Some((k, t))
            })
            .collect(),
    )))
}

/// [`other_orient`] of a file's text from its start: its first [`SCHEMA_SAMPLE_BYTES`] (those
/// the decoder samples before it decides), a byte order mark skipped.
pub(super) fn file_orient(text: &[u8]) -> Option<Orient> {
    let text = &text[..text.len().min(SCHEMA_SAMPLE_BYTES)];
    other_orient(text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text))
}

/// The pandas orient other than `records` that `text` (from its first non-blank byte) is
/// written in, told from its first key and the start of that key's value, when they say it
/// for sure: a row of JSON Lines never has an object or array under `layer`, under a number,
/// or with row labels for keys. Else, when `text` begins with a whole object (a small file)
/// whose values are all objects or arrays, from its keys. `None`: rows, or too little text to
/// tell.
pub(super) fn other_orient(text: &[u8]) -> Option<Orient> {
    let text = &text[skip_ws(text, 0)..];
    if text.first() != Some(&b'{') {
        return None;
    }
    // The first key of the object at `at`, and where its value starts.
    let first_key = |at: usize| -> Option<(&str, usize)> {
        let key_start = skip_ws(text, at + 1);
        if text.get(key_start) != Some(&b'"') {
            return None;
        }
        let key_len = memchr::memchr2(b'"', b'\\', text.get(key_start + 1..)?)?;
        let key = std::str::from_utf8(&text[key_start + 1..key_start + 1 + key_len]).ok()?;
        let colon = skip_ws(text, key_start + 2 + key_len);
        if text.get(colon) != Some(&b':') {
            return None;
        }
        Some((key, skip_ws(text, colon + 1)))
    };
    let is_label = |k: &str| k.parse::<i64>().is_ok();
    if let Some((key, at)) = first_key(0) {
        match (key, text.get(at).copied()) {
            ("schema", Some(b'{')) => return Some(Orient::Table),
            ("columns" | "index", Some(b'[')) => return Some(Orient::Split),
            (k, Some(b'{')) if is_label(k) => return Some(Orient::Index),
            (k, Some(b'{' | b'[')) if fixed_type(k).is_some() => return Some(Orient::Columns),
            // Another first key: its value's first key is a column (a row under a row
            // label), or a row label (a column's first value).
            (_, Some(b'{')) => match first_key(at) {
                Some((k, _)) if fixed_type(k).is_some() => return Some(Orient::Index),
                Some((k, _)) if is_label(k) => return Some(Orient::Columns),
                _ => {}
            },
            _ => {}
        }
    }
    // A small file whole: its keys.
    let mut stream = serde_json::Deserializer::from_slice(text).into_iter::<serde_json::Value>();
    let Some(Ok(serde_json::Value::Object(obj))) = stream.next() else {
        return None;
    };
    if obj.is_empty() || !obj.values().all(|v| v.is_object() || v.is_array()) {
        return None;
    }
    // Rows under row labels have columns for keys; columns have row labels.
    let rows_of_columns = obj.values().any(|v| v.as_object().is_some_and(|row| row.keys().any(|k| fixed_type(k).is_some())));
    Some(if obj.contains_key("schema") && obj.contains_key("data") {
        Orient::Table
    } else if obj.contains_key("columns") && obj.contains_key("data") {
        Orient::Split
    } else if obj.keys().any(|k| fixed_type(k).is_some()) {
        Orient::Columns
    } else if rows_of_columns || obj.keys().all(|k| is_label(k)) {
        Orient::Index
    } else {
        Orient::Columns
    })
}

fn describe(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl TextSource {
    pub fn new(file: &str, file_len: u64, format: Format) -> TextSource {
        TextSource {
            decoder: TextDecoder::new(file, file_len, format),
            columns: None,
            finished: false,
            chunk_bytes: TEXT_CHUNK_BYTES,
            compressed: None,
        }
    }

    /// A source for the `codec`-compressed file `file` of `file_len` bytes, which must hold
    /// CSV or JSON (told from its first decompressed bytes).
    pub fn compressed(file: &str, file_len: u64, codec: Codec) -> Result<TextSource, IngestError> {
        let inflater = Inflater::new(codec, file)?;
        // The decompressed length is not known: the decoder learns the end from `finish`.
        let mut source = TextSource::new(file, u64::MAX, Format::Csv);
        source.compressed = Some(Box::new(Compressed {
            inflater,
            file_len,
            taken: 0,
            head: Some(Vec::new()),
        }));
        Ok(source)
    }

    /// The format, once known (a compressed file's, from its first decompressed bytes).
    pub fn format(&self) -> Option<Format> {
        match &self.compressed {
            Some(c) if c.head.is_some() => None,
            _ => Some(self.decoder.format),
        }
    }

    /// The file's bytes taken so far, and its size.
    fn position(&self) -> (u64, u64) {
        match &self.compressed {
            Some(c) => (c.taken, c.file_len),
            None => (self.decoder.bytes_fed(), self.decoder.file_len),
        }
    }

    /// Read in chunks of `chunk_bytes` (at least 1) instead of [`TEXT_CHUNK_BYTES`].
    pub fn set_chunk_bytes(&mut self, chunk_bytes: u64) {
        self.chunk_bytes = chunk_bytes.max(1);
    }

    /// Whether the fast decoder may be used (see [`TextDecoder::with_fast_path`]).
    pub fn set_fast_path(&mut self, fast: bool) {
        self.decoder.fast_path = fast;
    }

    /// See [`TextDecoder::with_wide_metrics`].
    pub fn set_wide_metrics(&mut self, wide: bool) {
        self.decoder.wide_metrics = wide;
    }

    /// Bytes of the file read so far (a compressed file's compressed bytes).
    pub fn bytes_read(&self) -> u64 {
        match &self.compressed {
            Some(c) => c.taken,
            None => self.decoder.bytes_read(),
        }
    }

    pub fn columns(&self) -> Option<&ColumnMap> {
        self.columns.as_ref()
    }

    /// The `count` chunks after the one [`poll`](Self::poll) asks for (see
    /// [`Ingest::read_ahead`](super::Ingest::read_ahead)).
    pub(super) fn read_ahead(&self, count: usize) -> Vec<Range<u64>> {
        let (next, file_len) = self.position();
        (1..=count as u64)
            .map(|i| next.saturating_add(i.saturating_mul(self.chunk_bytes)))
            .take_while(|&start| start < file_len)
            .map(|start| start..start.saturating_add(self.chunk_bytes).min(file_len))
            .collect()
    }

    pub(super) fn poll(&mut self, builder: &mut CubeBuilder) -> Result<Poll, IngestError> {
        if self.finished {
            return Ok(Poll::Finished);
        }
        let (next, file_len) = self.position();
        if next < file_len {
            let end = (next + self.chunk_bytes).min(file_len);
            // One range: the next chunk.
            #[allow(clippy::single_range_in_vec_init)]
            return Ok(Poll::NeedsData(vec![next..end]));
        }
        let file = self.decoder.file.clone();
        let mut sink = CubeSink {
            file: &file,
            builder,
            columns: &mut self.columns,
            pool: self.decoder.pool.clone(),
        };
        if let Some(c) = self.compressed.as_mut() {
            let (codec, decoder) = (c.inflater.codec(), &mut self.decoder);
            c.inflater.end(|text| feed_decompressed(codec, &mut c.head, decoder, text, true, &mut sink))?;
        }
        self.decoder.finish(&mut sink)?;
        self.finished = true;
        Ok(Poll::Finished)
    }

    pub(super) fn push(
        &mut self,
        _ranges: Vec<Range<u64>>,
        data: Vec<Bytes>,
        builder: &mut CubeBuilder,
    ) -> Result<(), IngestError> {
        let file = self.decoder.file.clone();
        let mut sink = CubeSink {
            file: &file,
            builder,
            columns: &mut self.columns,
            pool: self.decoder.pool.clone(),
        };
        for chunk in data {
            let Some(c) = self.compressed.as_mut() else {
                self.decoder.push(&chunk, &mut sink)?;
                continue;
            };
            c.taken += chunk.len() as u64;
            let (codec, decoder) = (c.inflater.codec(), &mut self.decoder);
            c.inflater.decompress(&chunk, |text| feed_decompressed(codec, &mut c.head, decoder, text, false, &mut sink))?;
        }
        Ok(())
    }
}

impl TextDecoder {
    /// A decoder for the file `file` (a name, for messages) of `file_len` bytes (`u64::MAX`
    /// when not known, as for a stream being decompressed: [`finish`](Self::finish) then tells
    /// the end).
    pub fn new(file: &str, file_len: u64, format: Format) -> TextDecoder {
        TextDecoder {
            file: file.to_string(),
            file_len,
            format,
            bytes_fed: 0,
            bytes_read: 0,
            decoder: None,
            head: Vec::new(),
            schema: None,
            delimiter: b',',
            null_words: false,
            fast_path: true,
            wide_metrics: false,
            line_offset: 0,
            pool: BufferPool::new(),
            orient: None,
        }
    }

    /// Take the fast decoder's column buffers from `pool` (shared with other decoders),
    /// where whoever uses the batches hands them back ([`BufferPool::recycle`]).
    pub fn with_buffer_pool(mut self, pool: BufferPool) -> TextDecoder {
        self.pool = pool;
        self
    }

    /// Whether to use the fast decoder for the usual layouts (default `true`); `false` reads
    /// everything with arrow-csv / arrow-json (tests compare the two).
    pub fn with_fast_path(mut self, fast: bool) -> TextDecoder {
        self.fast_path = fast;
        self
    }

    /// Whether the fast decoder hands metric values over as float64 (`true`: for a builder
    /// that rounds them, [`CubeBuilder::wants_wide_metrics`]) or already narrowed to `f32`
    /// (`false`, the default: as the cube keeps them, half the memory).
    pub fn with_wide_metrics(mut self, wide: bool) -> TextDecoder {
        self.wide_metrics = wide;
        self
    }

    /// Bytes consumed by the decoder so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Bytes fed so far (the offset of the next chunk).
    pub fn bytes_fed(&self) -> u64 {
        self.bytes_fed
    }

    /// Whether every record so far was decoded by the fast decoder, which takes only whole
    /// records: after [`finish`](Self::finish), a CSV text then ended between records, outside
    /// quotes, each of its quoted fields closed.
    pub fn decoded_all_fast(&self) -> bool {
        matches!(self.decoder, Some(Decoder::Fast(_)))
    }

    /// The decoding schema, once known.
    pub fn schema(&self) -> Option<&SchemaRef> {
        match &self.orient {
            Some(o) => o.records.schema(),
            None => self.schema.as_ref(),
        }
    }
    fn error(&self, e: ArrowError) -> IngestError {
        let message = match e {
            ArrowError::CsvError(m) | ArrowError::JsonError(m) | ArrowError::ParseError(m) => m,
            other => other.to_string(),
        };
        let message = match self.explain(&message) {
            Some(m) => m,
            None => format!("{message} (in the bytes before offset {})", self.bytes_read),
        };
        match self.format {
            Format::Json => IngestError::Json {
                file: self.file.clone(),
                message,
            },
            _ => IngestError::Csv {
                file: self.file.clone(),
                message,
            },
        }
    }

    /// Puts the decoders' messages we know into the user's words.
    fn explain(&self, m: &str) -> Option<String> {
        if m.starts_with("Truncated record") {
            return Some(format!("the file ends in the middle of a row: it is cut short [{m}]"));
        }
        let column_name = |i: usize| {
            self.schema
                .as_ref()
                .and_then(|s| s.fields().get(i))
                .map_or_else(|| format!("number {}", i + 1), |f| format!("`{}`", f.name()))
        };
        if let Some(rest) = m.strip_prefix("Error while parsing value '") {
            // "Error while parsing value '{v}' as type '{t}' for column {i} at line {n}. Row data: ..."
            let (value, rest) = rest.split_once("' as type '")?;
            let (_, rest) = rest.split_once("' for column ")?;
            let (col, rest) = rest.split_once(" at line ")?;
            let line: String = rest.chars().take_while(char::is_ascii_digit).collect();
            // arrow-csv counts the header as line 0 here (its field-count errors count it as
            // line 1): say the line of the file, 1-based, header included.
            let line = line.parse::<u64>().ok()? + 1 + self.line_offset;
            let col: usize = col.parse().ok()?;
            let value: String = value.chars().take(40).collect();
            return Some(format!(
                "line {line}: column {} holds `{value}`, which is not a number",
                column_name(col)
            ));
        }
        if let Some(rest) = m.strip_prefix("incorrect number of fields for line ") {
            // "incorrect number of fields for line {n}, expected {e} got {g}"
            let (line, rest) = rest.split_once(", expected ")?;
            let (expected, got) = rest.split_once(" got ")?;
            let line = line.parse::<u64>().ok()? + self.line_offset;
            return Some(format!(
                "line {line} has {got} fields, but the header has {expected} columns (a row is cut, or a text with commas is not quoted)"
            ));
        }
        if let Some(rest) = m.strip_prefix("whilst decoding field '") {
            let (field, rest) = rest.split_once("': ")?;
            if let Some(v) = rest.strip_prefix("failed to parse ") {
                let (value, _) = v.rsplit_once(" as ")?;
                let value: String = value.chars().take(40).collect();
                return Some(format!(
                    "field `{field}` holds {value}, which is not a number (near byte {})",
                    self.bytes_read
                ));
            }
            if let Some(v) = rest.strip_prefix("expected primitive got ").or_else(|| rest.strip_prefix("expected string got ")) {
                // An object, array or boolean where a number or text belongs.
                let value: String = v.chars().take(40).collect();
                return Some(format!(
                    "field `{field}` holds {value}, but it must be a single number or text in every row (near byte {})",
                    self.bytes_read
                ));
            }
            return Some(format!("field `{field}`: {rest} (near byte {})", self.bytes_read));
        }
        None
    }

    /// The end of the file: let the decoder finish its last record and hand over the rest.
    pub fn finish(&mut self, sink: &mut dyn BatchSink) -> Result<(), IngestError> {
        if self.decoder.is_none() && !self.head.is_empty() {
            // A stream of unknown length (decompressed) that ended within the schema sample:
            // the end is known now.
            self.file_len = self.bytes_fed;
            let head = std::mem::take(&mut self.head);
            self.start_with(head, sink)?;
        }
        if let Some(o) = self.orient.as_mut() {
            return o.finish(&self.file, sink);
        }
        if self.decoder.is_none() {
            return Err(match self.format {
                Format::Json => IngestError::Json {
                    file: self.file.clone(),
                    message: "the file holds no complete JSON row".into(),
                },
                _ => IngestError::Csv {
                    file: self.file.clone(),
                    message: "the file holds no header row".into(),
                },
            });
        }
        if let Some(Decoder::Fast(f)) = &mut self.decoder {
            let fed = f.finish(&mut |b| sink.batch(b))?;
            let in_array = f.in_json_array();
            match fed {
                Fed::Taken => return Ok(()),
                Fed::Fallback(rest) => self.fall_back(rest, in_array, sink)?,
            }
        }
        if let Some(Decoder::Csv(d)) = &mut self.decoder {
            d.decode(&[]).map_err(|e| self.error(e))?;
        }
        self.flush(sink)
    }

    /// The general decoder for this file (`header`: the CSV header row comes first).
    fn general(&self, header: bool) -> Result<Decoder, IngestError> {
        let Some(schema) = self.schema.clone() else {
            return Err(IngestError::Read {
                file: self.file.clone(),
                message: "internal error: no schema before decoding".into(),
            });
        };
        Ok(match self.format {
            Format::Json => Decoder::Json(
                arrow_json::ReaderBuilder::new(schema)
                    .with_batch_size(BATCH_ROWS)
                    .with_flatten(true)
                    .with_coerce_primitive(true)
                    .build_decoder()
                    .map_err(|e| self.error(e))?,
            ),
            _ => {
                let mut b = arrow_csv::ReaderBuilder::new(schema)
                    .with_header(header)
                    .with_delimiter(self.delimiter)
                    .with_batch_size(BATCH_ROWS);
                if self.null_words {
                    let pattern = format!("^(?i:|{})$", CSV_NULL_WORDS.join("|"));
                    let re = regex::Regex::new(&pattern).map_err(|e| IngestError::Csv {
                        file: self.file.clone(),
                        message: e.to_string(),
                    })?;
                    b = b.with_null_regex(re);
                }
                Decoder::Csv(Box::new(b.build_decoder()))
            }
        })
    }

    /// The fast decoder met something unusual: `rest` (the bytes from the start of that
    /// record on, up to the end of what was fed) and all later bytes go to the general
    /// decoder. `in_array`: the JSON records array was open (its `[` is fed again first).
    fn fall_back(&mut self, rest: Vec<u8>, in_array: bool, sink: &mut dyn BatchSink) -> Result<(), IngestError> {
        let Some(Decoder::Fast(f)) = &self.decoder else {
            return Ok(());
        };
        let header = !f.header_done();
        self.line_offset = if header || self.format == Format::Json { 0 } else { f.records() + 1 };
        self.decoder = Some(self.general(header)?);
        self.bytes_read = self.bytes_fed.saturating_sub(rest.len() as u64);
        if in_array {
            if let Some(d) = self.decoder.as_mut() {
                d.decode(b"[").map_err(|e| self.error(e))?;
            }
        }
        self.decode(&rest, sink)
    }

    fn flush(&mut self, sink: &mut dyn BatchSink) -> Result<(), IngestError> {
        let Some(d) = self.decoder.as_mut() else {
            return Ok(());
        };
        match d.flush() {
            Ok(Some(b)) => sink.batch(b),
            Ok(None) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn start(&mut self, chunk: &[u8], sink: &mut dyn BatchSink) -> Result<bool, IngestError> {
        let at_eof = self.bytes_fed >= self.file_len;
        let decoder = match self.format {
            Format::Json => {
                let Some(schema) = json_schema(&self.file, chunk, at_eof)? else {
                    return Ok(false);
                };
                sink.begin(&schema)?;
                self.schema = Some(schema.clone());
                match FastText::new(&self.file, Layout::Json, &schema, BATCH_ROWS, &self.pool, self.wide_metrics).filter(|_| self.fast_path) {
                    Some(f) => Decoder::Fast(Box::new(f)),
                    None => self.general(true)?,
                }
            }
            _ => {
                let delim = delimiter(chunk);
                let (schema, null_words) = csv_schema(&self.file, chunk, delim, at_eof)?;
                sink.begin(&schema)?;
                self.schema = Some(schema.clone());
                self.delimiter = delim;
                self.null_words = null_words;
                let fast = (!null_words && self.fast_path)
                    .then(|| FastText::new(&self.file, Layout::Csv(delim), &schema, BATCH_ROWS, &self.pool, self.wide_metrics))
                    .flatten();
                match fast {
                    Some(f) => Decoder::Fast(Box::new(f)),
                    None => self.general(true)?,
                }
            }
        };
        self.decoder = Some(decoder);
        Ok(true)
    }

    /// Decide the schema from the held first bytes `head` and decode them; `Ok(false)` when
    /// more bytes are needed (they are held again).
    fn start_with(&mut self, head: Vec<u8>, sink: &mut dyn BatchSink) -> Result<bool, IngestError> {
        // A UTF-8 byte order mark would become part of the first column's name.
        let bom = if head.starts_with(b"\xef\xbb\xbf") { 3 } else { 0 };
        let text = &head[bom..];
        // pandas' other orients are one object, the whole file: told from its first key and
        // read as records.
        let orient = (self.format == Format::Json)
            .then(|| other_orient(text))
            .flatten();
        if let Some(orient) = orient {
            let mut o = Box::new(OrientDecoder {
                reader: OrientReader::new(orient),
                records: self.records_decoder(),
                text: Vec::new(),
            });
            o.push(text, &self.file, sink)?;
            self.orient = Some(o);
            self.bytes_read = self.bytes_fed;
            return Ok(true);
        }
        if !self.start(&head[bom..], sink)? {
            if head.len() > MAX_FIRST_ROW_BYTES {
                return Err(IngestError::Json {
                    file: self.file.clone(),
                    message: format!("the first row is longer than {} MB", MAX_FIRST_ROW_BYTES >> 20),
                });
            }
            self.head = head;
            return Ok(false);
        }
        self.bytes_read += bom as u64;
        self.decode(&head[bom..], sink)?;
        Ok(true)
    }

    /// A decoder of the records text a pandas orient file is rewritten as, set up as this one.
    fn records_decoder(&self) -> TextDecoder {
        TextDecoder::new(&self.file, u64::MAX, Format::Json)
            .with_buffer_pool(self.pool.clone())
            .with_fast_path(self.fast_path)
            .with_wide_metrics(self.wide_metrics)
    }

    /// The whole file at once, for a caller that holds it (the CLI maps its input), in place
    /// of [`push`](Self::push) and [`finish`](Self::finish): a pandas `orient="columns"` file
    /// is then read with a cursor per column ([`ColumnsInPlace`]), holding nothing, where fed
    /// chunk by chunk its values are held until its end (about a third of the file). Returns
    /// `false`, having read nothing, for any other file: feed that one as usual. `read` is told
    /// the byte ranges of `data` that are read (to drop from memory).
    pub fn decode_whole(
        &mut self,
        data: &[u8],
        sink: &mut dyn BatchSink,
        read: &mut dyn FnMut(Range<usize>),
    ) -> Result<bool, IngestError> {
        if self.format != Format::Json || self.bytes_fed > 0 || self.orient.is_some() {
            return Ok(false);
        }
        if file_orient(data) != Some(Orient::Columns) {
            return Ok(false);
        }
        let Some(mut rows) = ColumnsInPlace::new(data, read) else {
            return Ok(false);
        };
        let orient = Orient::Columns;
        let mut records = self.records_decoder();
        let mut text = Vec::new();
        loop {
            text.clear();
            let more = rows
                .next(&mut text, ROWS_IN_PLACE_BYTES)
                .map_err(|m| orient_error(&self.file, orient, m))?;
            records.push(&text, sink).map_err(|e| in_orient_rows(e, orient))?;
            rows.read(ROWS_IN_PLACE_BYTES, read);
            if !more {
                break;
            }
        }
        records.finish(sink).map_err(|e| in_orient_rows(e, orient))?;
        self.bytes_fed = data.len() as u64;
        self.bytes_read = self.bytes_fed;
        Ok(true)
    }

    /// Feed the next `chunk` of the file; full batches go to `sink`.
    pub fn push(&mut self, chunk: &[u8], sink: &mut dyn BatchSink) -> Result<(), IngestError> {
        if let Some(o) = self.orient.as_mut() {
            self.bytes_fed += chunk.len() as u64;
            o.push(chunk, &self.file, sink)?;
            self.bytes_read = self.bytes_fed;
            return Ok(());
        }
        if self.decoder.is_some() {
            self.bytes_fed += chunk.len() as u64;
            return self.decode(chunk, sink);
        }
        // Hold the first bytes until there are enough to decide the schema. Only those are
        // copied: the rest of a large chunk is decoded where it is (once the first row is
        // known to fit in the sample, else it is held too).
        let take = match SCHEMA_SAMPLE_BYTES.checked_sub(self.head.len()) {
            Some(room) if room > 0 => room.min(chunk.len()),
            _ => chunk.len(),
        };
        let (sample, rest) = chunk.split_at(take);
        self.bytes_fed += sample.len() as u64;
        self.head.extend_from_slice(sample);
        let at_eof = self.bytes_fed >= self.file_len;
        if self.head.len() < SCHEMA_SAMPLE_BYTES && !at_eof {
            return Ok(());
        }
        let head = std::mem::take(&mut self.head);
        self.start_with(head, sink)?;
        if rest.is_empty() {
            return Ok(());
        }
        self.push(rest, sink)
    }

    fn decode(&mut self, mut buf: &[u8], sink: &mut dyn BatchSink) -> Result<(), IngestError> {
        if let Some(Decoder::Fast(f)) = &mut self.decoder {
            let fed = f.decode(buf, false, &mut |b| sink.batch(b))?;
            let in_array = f.in_json_array();
            return match fed {
                Fed::Taken => {
                    self.bytes_read += buf.len() as u64;
                    Ok(())
                }
                Fed::Fallback(rest) => self.fall_back(rest, in_array, sink),
            };
        }
        while !buf.is_empty() {
            let Some(d) = self.decoder.as_mut() else {
                return Ok(());
            };
            let n = match d.decode(buf) {
                Ok(n) => n,
                Err(e) => return Err(self.error(e)),
            };
            self.bytes_read += n as u64;
            buf = &buf[n..];
            if !buf.is_empty() {
                // The batch is full.
                self.flush(sink)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `json_schema` gives for the start of a file (not its end).
    fn error_of_start(text: &str) -> Option<String> {
        json_schema("f.json", text.as_bytes(), false).err().map(|e| e.to_string())
    }

    #[test]
    fn pandas_other_orients_are_told_from_the_start_of_the_file() {
        // The first bytes of a large file of each orient, as pandas 3 writes them (the rest of
        // the file is the one object: it is not read whole to tell), and small files whole
        // with their keys in another order.
        for (start, orient) in [
            (r#"{"columns":["generation_step","layer"],"index":[0,1],"data":[[0,0],[0,1"#, Orient::Split),
            (r#"{"index":[0,1],"columns":["layer"],"data":[[0],[1"#, Orient::Split),
            (r#"{"schema":{"fields":[{"name":"index","type":"integer"},{"name":"layer""#, Orient::Table),
            (r#"{"0":{"generation_step":0,"layer":0,"token_masked":"a"},"1":{"gen"#, Orient::Index),
            (r#"{"generation_step":{"0":0,"1":0,"2":0,"3":"#, Orient::Columns),
            ("{ \"layer\" : {\"0\":1", Orient::Columns),
            // A first column this viewer does not know: its row labels tell.
            (r#"{"seed":{"0":3,"1":3,"2""#, Orient::Columns),
            (r#"{"data":[{"layer":0}],"schema":{"fields":[]}}"#, Orient::Table),
            (r#"{"data":[[0]],"columns":["layer"]}"#, Orient::Split),
            (r#"{"a":{"x":0},"b":{"x":1}}"#, Orient::Columns),
            // Row labels that are not numbers (a string index).
            (r#"{"a":{"layer":0,"token_position":0},"b":{"layer""#, Orient::Index),
            (r#"{"seed":{"a":1,"b":2},"layer":{"a":0,"b":1}}"#, Orient::Columns),
            (r#"{"a":{"seed":1},"b":{"seed":2,"layer":0}}"#, Orient::Index),
        ] {
            assert_eq!(other_orient(start.as_bytes()), Some(orient), "{start}");
        }
    }

    #[test]
    fn rows_are_not_taken_for_another_orient() {
        // A row whose first field is an object (not a column this viewer knows), a row cut in
        // its first key, and plain rows: no verdict before the row is read.
        for start in [r#"{"meta":{"seed":3},"layer":0"#, r#"{"lay"#, r#"{"layer":0,"token_position":1"#, r#"[{"columns":[1]"#, "{"] {
            assert_eq!(error_of_start(start), None, "{start}");
            assert_eq!(other_orient(start.as_bytes()), None, "{start}");
        }
    }
}
