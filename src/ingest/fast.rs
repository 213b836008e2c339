//! A fast decoder for the CSV and JSON layouts that writers produce in practice (pandas
//! `to_csv`, `to_json(orient="records")`, JSON Lines): the same values as arrow-csv /
//! arrow-json would give, several times faster on result files. The number columns the cube
//! reads come out in the types it keeps, converted as it would convert them (see
//! [`FastText::new`]); arrow-csv / arrow-json give them as Float64.
//!
//! Why it is faster: result files repeat long text on every row (`prompt_name`,
//! `config_prompt`); a dictionary column here compares the raw bytes of a field with those of
//! the previous row first (one `memcmp`, no unescaping, no hashing), and plain decimal numbers
//! are parsed by an exact fast path (Clinger: an integer mantissa below 2^53 scaled by a power
//! of ten up to 10^22 is correctly rounded by one IEEE division or multiplication). A CSV
//! record of such fields is read in one pass, each field parsed where it starts (the repeated
//! text compared in place, no search for its closing quote); any other record is first split
//! into fields.
//!
//! It handles only what it is sure of. Anything unusual — a field count that differs from the
//! header, a quote inside an unquoted field, a lone `\r`, a blank line, a value that is not a
//! number in a number column, an unknown or repeated JSON key, a nested value, invalid UTF-8 —
//! stops it at the start of that record: the rows before are handed over, and the caller
//! feeds the rest of the file to arrow-csv / arrow-json, which then reads it (or reports the
//! error) exactly as it would have from the start.
//!
//! One difference, on purpose: a CSV word that spells "no value" (`NA`, `null`, …) in a number
//! column is no value here, where arrow-csv, told to look for those words only when the
//! file's first rows hold one, would refuse the file (R writes `NA` only where a value is
//! missing, which may be far into a file).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_buffer::{ArrowNativeType, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use super::text::is_null_word;
use super::IngestError;
use crate::cube::{fits_i64, ColumnMap};

/// What became of the bytes handed to [`FastText::decode`].
pub(super) enum Fed {
    /// All bytes taken (a partial record is held until more come).
    Taken,
    /// Something unusual: the rows before it were handed over; these bytes (from the start of
    /// the unusual record, the held part included) must go to the general decoder.
    Fallback(Vec<u8>),
}

/// The layouts the fast decoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// CSV with this delimiter, header row first, no null words.
    Csv(u8),
    /// JSON: an array of row objects, or JSON Lines.
    Json,
}

/// Where a JSON stream is between records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonAt {
    /// Before the first non-space byte: `[` (array) or `{` (JSON Lines).
    Start,
    /// In an array, before a record (after `[` or `,`).
    ArrayValue,
    /// In an array, after a record: `,` or `]`.
    ArrayNext,
    /// After the array's `]` (anything more goes to the general decoder).
    ArrayDone,
    /// JSON Lines, before a record.
    Lines,
}

/// Which rows of a column have a value. Nothing is stored per row until the first row without
/// one (result files rarely have any): a push per field and a byte per field and row saved.
#[derive(Default)]
struct Validity {
    /// Per row, once `nulls > 0`; else ignored (every row has a value).
    valid: Vec<bool>,
    nulls: usize,
}

impl Validity {
    /// The next row has a value.
    #[inline(always)]
    fn push_valid(&mut self) {
        if self.nulls > 0 {
            self.valid.push(true);
        }
    }

    /// The next row, with `rows` rows before it, has none.
    fn push_null(&mut self, rows: usize) {
        if self.nulls == 0 {
            self.valid.clear();
            self.valid.resize(rows, true);
        }
        self.valid.push(false);
        self.nulls += 1;
    }

    /// Keep the first `rows` rows.
    fn truncate(&mut self, rows: usize) {
        if self.nulls > 0 && rows < self.valid.len() {
            self.nulls -= self.valid[rows..].iter().filter(|v| !**v).count();
            self.valid.truncate(rows);
        }
    }

    /// The rows' validity as Arrow has it (`None`: every row has a value), leaving none.
    fn take(&mut self) -> Option<NullBuffer> {
        let valid = std::mem::take(&mut self.valid);
        (std::mem::take(&mut self.nulls) > 0).then(|| NullBuffer::from(valid))
    }
}

/// Column buffers of decoded batches, handed back once the batches are used, for the next
/// batches. A decoder whose batches are put into the cube on another thread (the CLI's) would
/// otherwise take fresh memory for every batch: the allocator gives much of the memory freed
/// by another thread back to the system, and the next batch's pages are faulted in again.
/// (Reading the seed-scale CSV: page faults 50K → 36K, CPU time −2–3%.)
///
/// Buffers are kept by the width of their values (8 bytes: `f64`, `i64`; 4 bytes: `f32`,
/// dictionary keys) and given to any column of that width. Clones share one pool. It holds at
/// most [`BufferPool::MAX_SPARE`] buffers of each width; buffers that are shared, or that the
/// general decoders made, are not taken.
#[derive(Clone, Default)]
pub struct BufferPool(Arc<Mutex<Spare>>);

#[derive(Default)]
struct Spare {
    wide: Vec<Vec<u64>>,
    narrow: Vec<Vec<u32>>,
}

impl BufferPool {
    /// Most buffers of each width held (a few batches' worth).
    pub const MAX_SPARE: usize = 32;

    pub fn new() -> BufferPool {
        BufferPool::default()
    }

    /// Hand back the buffers of `batch`: its number columns' values and its dictionary
    /// columns' keys, where nothing else holds them.
    pub fn recycle(&self, batch: RecordBatch) {
        let (_, columns, _) = batch.into_parts();
        let mut wide = Vec::new();
        let mut narrow = Vec::new();
        for column in columns {
            let data = column.to_data();
            // The array's `Arc` dropped, then its data: the buffer is then unshared if
            // nothing else kept it (`into_vec` takes only such a buffer, whole).
            drop(column);
            let width = match data.data_type() {
                DataType::Float64 | DataType::Int64 => 8,
                DataType::Float32 => 4,
                DataType::Dictionary(k, _) if k.as_ref() == &DataType::Int32 => 4,
                _ => continue,
            };
            let Some(buffer) = data.buffers().first().cloned() else { continue };
            drop(data);
            if width == 8 {
                wide.extend(buffer.into_vec::<u64>().ok());
            } else {
                narrow.extend(buffer.into_vec::<u32>().ok());
            }
        }
        let Ok(mut spare) = self.0.lock() else { return };
        let room = Self::MAX_SPARE.saturating_sub(spare.wide.len());
        spare.wide.extend(wide.into_iter().take(room));
        let room = Self::MAX_SPARE.saturating_sub(spare.narrow.len());
        spare.narrow.extend(narrow.into_iter().take(room));
    }

    /// An empty buffer with room for `rows` values: a spare one of their width if there is
    /// one.
    fn take<T: ArrowNativeType>(&self, rows: usize) -> Vec<T> {
        let spare = self.0.lock().ok().and_then(|mut s| match std::mem::size_of::<T>() {
            8 => s.wide.pop().map(Buffer::from_vec),
            4 => s.narrow.pop().map(Buffer::from_vec),
            _ => None,
        });
        // Same size and alignment: the buffer is taken as it is.
        let mut v = spare.and_then(|b| b.into_vec::<T>().ok()).unwrap_or_default();
        v.clear();
        v.reserve(rows);
        v
    }

    /// Buffers held (8 bytes wide, 4 bytes wide).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let s = self.0.lock().unwrap();
        (s.wide.len(), s.narrow.len())
    }
}

/// A number column's values, stored as the cube takes them (see [`FastText::new`]): the cube
/// then uses the batch's arrays as they are, without a converted copy of each.
enum Numbers {
    /// Any other number column: as parsed.
    F64(Vec<f64>),
    /// The step, layer and position columns: whole numbers as the cube's
    /// [`numbers_as_i64`](crate::cube::numbers_as_i64) makes them (the fraction dropped; a value
    /// out of range, NaN or infinite is no value).
    I64(Vec<i64>),
    /// A metric column: rounded to the nearest `f32`, as the cube stores it.
    F32(Vec<f32>),
}

impl Numbers {
    fn len(&self) -> usize {
        match self {
            Numbers::F64(v) => v.len(),
            Numbers::I64(v) => v.len(),
            Numbers::F32(v) => v.len(),
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Numbers::F64(_) => DataType::Float64,
            Numbers::I64(_) => DataType::Int64,
            Numbers::F32(_) => DataType::Float32,
        }
    }

    /// Appends `v`, and whether the row has a value to `validity`.
    #[inline(always)]
    fn push(&mut self, v: f64, validity: &mut Validity) {
        match self {
            Numbers::F64(x) => x.push(v),
            Numbers::F32(x) => x.push(v as f32),
            Numbers::I64(x) if fits_i64(v) => x.push(v as i64),
            Numbers::I64(_) => return self.push_null(validity),
        }
        validity.push_valid();
    }

    fn push_null(&mut self, validity: &mut Validity) {
        validity.push_null(self.len());
        match self {
            Numbers::F64(x) => x.push(0.0),
            Numbers::F32(x) => x.push(0.0),
            Numbers::I64(x) => x.push(0),
        }
    }

    fn truncate(&mut self, rows: usize) {
        match self {
            Numbers::F64(v) => v.truncate(rows),
            Numbers::I64(v) => v.truncate(rows),
            Numbers::F32(v) => v.truncate(rows),
        }
    }

    /// Room for `rows` more values; an empty buffer (handed over with its batch) is replaced
    /// by one from `pool`.
    fn reserve(&mut self, rows: usize, pool: &BufferPool) {
        fn room<T: ArrowNativeType>(v: &mut Vec<T>, rows: usize, pool: &BufferPool) {
            if v.capacity() == 0 {
                *v = pool.take(rows);
            } else {
                v.reserve(rows);
            }
        }
        match self {
            Numbers::F64(v) => room(v, rows, pool),
            Numbers::I64(v) => room(v, rows, pool),
            Numbers::F32(v) => room(v, rows, pool),
        }
    }

    /// The values as an array with `nulls`, leaving the buffer empty.
    fn take(&mut self, nulls: Option<NullBuffer>) -> ArrayRef {
        match self {
            Numbers::F64(v) => Arc::new(Float64Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
            Numbers::I64(v) => Arc::new(Int64Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
            Numbers::F32(v) => Arc::new(Float32Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
        }
    }
}

/// One output column being filled.
enum Column {
    Number {
        values: Numbers,
        validity: Validity,
        /// The previous CSV field read in one pass, to find it again without parsing.
        last: LastNumber,
    },
    Dict(DictColumn),
    Text {
        offsets: Vec<i32>,
        data: Vec<u8>,
        validity: Validity,
    },
}

/// A CSV number field and the delimiter or line break after it, at most eight bytes in all,
/// with its value: the next row's field, when its bytes are the same, has the same value
/// (a step, a layer, a position repeat for many rows in a row).
#[derive(Default, Clone, Copy)]
struct LastNumber {
    /// The bytes as the low bytes of a word (the first lowest), the others zero.
    word: u64,
    /// The bytes of `word` that count (`0`: none remembered).
    mask: u64,
    /// How many bytes they are.
    len: usize,
    value: f64,
}

impl LastNumber {
    /// The length of the remembered field and its end, if `data` holds them at `at`.
    #[inline(always)]
    fn again_at(&self, data: &[u8], at: usize) -> Option<usize> {
        let w = word_at(data, at)?;
        (self.mask != 0 && (w ^ self.word) & self.mask == 0).then_some(self.len)
    }

    /// Remember the `len` bytes at `at` in `data` (field and end), of value `value`; none when
    /// they are more than eight.
    #[inline(always)]
    fn remember(&mut self, data: &[u8], at: usize, len: usize, value: f64) {
        match word_at(data, at) {
            Some(w) if len <= 8 => {
                self.mask = if len == 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
                self.word = w & self.mask;
                self.len = len;
                self.value = value;
            }
            _ => self.mask = 0,
        }
    }
}

#[derive(Default)]
struct DictColumn {
    keys: Vec<i32>,
    validity: Validity,
    /// Decoded text → key, for this batch (foldhash: short keys hashed several times faster
    /// than with SipHash; the input is a local file, not an adversary).
    /// Its keys are valid UTF-8 (only `&str` is inserted), so raw bytes found here are text.
    map: HashMap<Box<[u8]>, i32, foldhash::fast::FixedState>,
    /// The dictionary values of this batch, in key order.
    offsets: Vec<i32>,
    data: Vec<u8>,
    /// The raw bytes of the previous row's field and its key (-1: none).
    last_raw: Vec<u8>,
    last_key: i32,
    /// The same for the different text before it (-1: none): a column whose text alternates
    /// (the variant, `Full` then `Attn`) finds it here without hashing.
    prev_raw: Vec<u8>,
    prev_key: i32,
    /// For each key, the key that last came after it (a different one; -1: none yet), and the
    /// raw bytes of each key's field when the key was made: a column whose texts come round in
    /// the same order (the token of each position, layer after layer; 34 variants) finds the
    /// next one here without hashing.
    next: Vec<i32>,
    raws: Vec<u8>,
    raw_ends: Vec<usize>,
}

/// Whether `data` holds `raw` at `at`.
#[inline(always)]
fn raw_at(data: &[u8], at: usize, raw: &[u8]) -> bool {
    data.get(at..at + raw.len()).is_some_and(|d| same_bytes(d, raw))
}

impl DictColumn {
    fn new() -> DictColumn {
        DictColumn {
            offsets: vec![0],
            last_key: -1,
            prev_key: -1,
            ..Default::default()
        }
    }

    /// The key of `text` (decoded), added to the dictionary when new.
    fn key_of(&mut self, text: &str) -> i32 {
        if let Some(&k) = self.map.get(text.as_bytes()) {
            return k;
        }
        let k = (self.offsets.len() - 1) as i32;
        self.data.extend_from_slice(text.as_bytes());
        self.offsets.push(self.data.len() as i32);
        self.map.insert(text.as_bytes().into(), k);
        k
    }

    /// When `holds` says yes to the raw field of the previous row's text, or of the different
    /// text before it, appends a row holding that text again (the two remembered texts are
    /// compared in place, without a hash).
    #[inline(always)]
    fn push_repeat_if(&mut self, holds: impl Fn(&[u8]) -> bool) -> bool {
        if self.last_key >= 0 && holds(&self.last_raw) {
            self.push_last();
        } else if self.prev_key >= 0 && holds(&self.prev_raw) {
            // The text before becomes the previous, and the previous the one before.
            std::mem::swap(&mut self.last_raw, &mut self.prev_raw);
            std::mem::swap(&mut self.last_key, &mut self.prev_key);
            self.push_last();
        } else if let Some(k) = self.next_after_last().filter(|&k| holds(self.raw_of(k))) {
            // A row of key `k` from its own raw bytes. `raws` is lent out for the call:
            // `push_key` adds to it only for a new key, and `k` is not one.
            let range = self.raw_range(k);
            let raws = std::mem::take(&mut self.raws);
            self.push_key(k, &raws[range]);
            self.raws = raws;
        } else {
            return false;
        }
        true
    }

    /// The key that last came after the previous row's, if any.
    #[inline(always)]
    fn next_after_last(&self) -> Option<i32> {
        let k = *self.next.get(usize::try_from(self.last_key).ok()?)?;
        (k >= 0).then_some(k)
    }

    /// Where the raw bytes key `k` was made from lie in `raws`.
    fn raw_range(&self, k: i32) -> std::ops::Range<usize> {
        let k = k as usize;
        (if k == 0 { 0 } else { self.raw_ends[k - 1] })..self.raw_ends[k]
    }

    fn raw_of(&self, k: i32) -> &[u8] {
        &self.raws[self.raw_range(k)]
    }

    /// [`Self::push_repeat_if`] for the raw field at `at` in `data` (`quoted`: a JSON string
    /// body, followed by its closing quote; else a CSV field, what follows it for the caller
    /// to check), without a scan for the field's end; returns the raw field's length.
    #[inline(always)]
    fn push_repeat_at(&mut self, data: &[u8], at: usize, quoted: bool) -> Option<usize> {
        let repeated = if quoted {
            self.push_repeat_if(|raw| quoted_at(data, at, raw))
        } else {
            self.push_repeat_if(|raw| raw_at(data, at, raw))
        };
        repeated.then_some(self.last_raw.len())
    }

    /// Appends a row holding the previous row's text again.
    fn push_last(&mut self) {
        self.keys.push(self.last_key);
        self.validity.push_valid();
    }

    /// Appends a row holding `text` (decoded) whose field was `raw`, remembered for the next
    /// row's raw-bytes comparison.
    fn push_text(&mut self, text: &str, raw: &[u8]) {
        let k = self.key_of(text);
        self.push_key(k, raw);
    }

    /// Appends a row holding the text of an unquoted field (its raw bytes are its text);
    /// `false` if they are not UTF-8. A text already in the dictionary is found without
    /// checking it again (variants alternate on every row).
    fn push_unquoted(&mut self, raw: &[u8]) -> bool {
        let k = match self.map.get(raw) {
            Some(&k) => k,
            None => match std::str::from_utf8(raw) {
                Ok(text) => self.key_of(text),
                Err(_) => return false,
            },
        };
        self.push_key(k, raw);
        true
    }

    fn push_key(&mut self, k: i32, raw: &[u8]) {
        self.keys.push(k);
        self.validity.push_valid();
        if k as usize == self.raw_ends.len() {
            // A new key (keys are made in order): its raw bytes, for `next`.
            self.raws.extend_from_slice(raw);
            self.raw_ends.push(self.raws.len());
            self.next.push(-1);
        }
        if k != self.last_key {
            if let Some(n) = usize::try_from(self.last_key).ok().and_then(|l| self.next.get_mut(l)) {
                *n = k;
            }
            std::mem::swap(&mut self.last_raw, &mut self.prev_raw);
            self.prev_key = self.last_key;
        }
        self.last_key = k;
        self.last_raw.clear();
        self.last_raw.extend_from_slice(raw);
    }
}

impl Column {
    fn push_null(&mut self) {
        match self {
            Column::Number { values, validity, .. } => values.push_null(validity),
            Column::Dict(d) => {
                d.validity.push_null(d.keys.len());
                d.keys.push(0);
            }
            Column::Text { offsets, data, validity } => {
                validity.push_null(offsets.len() - 1);
                offsets.push(data.len() as i32);
            }
        }
    }

    /// [`DictColumn::push_repeat_at`] for a dictionary column; `None` for any other.
    #[inline(always)]
    fn push_repeat_at(&mut self, data: &[u8], at: usize, quoted: bool) -> Option<usize> {
        match self {
            Column::Dict(d) => d.push_repeat_at(data, at, quoted),
            _ => None,
        }
    }

    /// Appends a row holding the text of an unquoted field (its raw bytes are its text);
    /// `false` if they are not UTF-8, or this is not a text column.
    fn push_unquoted_text(&mut self, raw: &[u8]) -> bool {
        match self {
            Column::Dict(d) => d.push_unquoted(raw),
            Column::Text { .. } => std::str::from_utf8(raw).is_ok_and(|text| self.push_text(text, raw)),
            Column::Number { .. } => false,
        }
    }

    /// Appends a row holding `text`, decoded from the raw field `raw`; `false` if this is not
    /// a text column.
    fn push_text(&mut self, text: &str, raw: &[u8]) -> bool {
        match self {
            Column::Dict(d) => d.push_text(text, raw),
            Column::Text { offsets, data, validity } => {
                data.extend_from_slice(text.as_bytes());
                offsets.push(data.len() as i32);
                validity.push_valid();
            }
            Column::Number { .. } => return false,
        }
        true
    }

    /// Room for `rows` more rows (the values of text aside). A column whose buffer was handed
    /// over with its batch takes a spare one from `pool`.
    fn reserve(&mut self, rows: usize, pool: &BufferPool) {
        match self {
            Column::Number { values, .. } => values.reserve(rows, pool),
            Column::Dict(d) if d.keys.capacity() == 0 => d.keys = pool.take(rows),
            Column::Dict(d) => d.keys.reserve(rows),
            Column::Text { offsets, .. } => offsets.reserve(rows),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Number { values, .. } => values.len(),
            Column::Dict(d) => d.keys.len(),
            Column::Text { offsets, .. } => offsets.len() - 1,
        }
    }

    fn truncate(&mut self, rows: usize) {
        match self {
            Column::Number { values, validity, .. } => {
                values.truncate(rows);
                validity.truncate(rows);
            }
            Column::Dict(d) => {
                d.keys.truncate(rows);
                d.validity.truncate(rows);
            }
            Column::Text { offsets, data, validity } => {
                offsets.truncate(rows + 1);
                data.truncate(*offsets.last().unwrap_or(&0) as usize);
                validity.truncate(rows);
            }
        }
    }

    /// The filled values as an array, leaving the column empty.
    fn take(&mut self) -> Result<ArrayRef, ArrowError> {
        match self {
            Column::Number { values, validity, .. } => Ok(values.take(validity.take())),
            Column::Text { offsets, data, validity } => {
                let n = validity.take();
                let offsets = std::mem::replace(offsets, vec![0]);
                let data = std::mem::take(data);
                Ok(Arc::new(StringArray::try_new(OffsetBuffer::new(ScalarBuffer::from(offsets)), data.into(), n)?))
            }
            Column::Dict(d) => {
                let n = d.validity.take();
                let keys = Int32Array::new(ScalarBuffer::from(std::mem::take(&mut d.keys)), n);
                let offsets = std::mem::replace(&mut d.offsets, vec![0]);
                let data = std::mem::take(&mut d.data);
                d.map.clear();
                d.last_key = -1;
                d.last_raw.clear();
                d.prev_key = -1;
                d.prev_raw.clear();
                d.next.clear();
                d.raws.clear();
                d.raw_ends.clear();
                let values = StringArray::try_new(OffsetBuffer::new(ScalarBuffer::from(offsets)), data.into(), None)?;
                debug_assert!(keys.iter().flatten().all(|k| (0..arrow_array::Array::len(&values) as i32).contains(&k)));
                // SAFETY: every valid key was given by `key_of`, an index into these values
                // (a null row's key is 0, and not read). `try_new` checked every key again:
                // 1.4% of the CPU time of a CSV convert.
                Ok(Arc::new(unsafe { DictionaryArray::<Int32Type>::new_unchecked(keys, Arc::new(values)) }))
            }
        }
    }
}

/// The fast CSV / JSON decoder. See the [module docs](self).
pub(super) struct FastText {
    /// The file's name, for messages.
    file: String,
    layout: Layout,
    /// The schema of the batches it hands over.
    schema: SchemaRef,
    columns: Vec<Column>,
    /// JSON: the key of each column, as raw bytes.
    keys: Vec<Vec<u8>>,
    /// JSON: which columns the current record has set.
    seen: Vec<bool>,
    rows: usize,
    batch_rows: usize,
    /// Bytes of a record not yet complete.
    held: Vec<u8>,
    header_done: bool,
    json_at: JsonAt,
    /// Data records handed over so far.
    records: u64,
    /// CSV: the field ranges of the record being parsed (scratch).
    fields: Vec<(usize, usize, bool)>,
    /// Where the columns' buffers come from.
    pool: BufferPool,
}

/// Ways a record can end while being parsed.
enum Rec {
    /// A complete record ending before this offset.
    Done(usize),
    /// The bytes end before the record does.
    More,
    /// Not for the fast path.
    Unusual,
}

impl FastText {
    /// A fast decoder producing the columns of `schema` (Float64, Utf8 or dictionary of Utf8;
    /// `None` for any other type), `batch_rows` rows per batch, its buffers taken from `pool`.
    ///
    /// A Float64 column comes out as the cube takes it when the cube's [`ColumnMap`] of
    /// `schema` gives it a role: Int64 for the step, layer and position, Float32 for a metric
    /// (each value converted as the cube would convert it) unless `wide_metrics`; any other
    /// stays Float64. The cube finds its columns by name: with two columns of one name, all
    /// stay Float64.
    pub(super) fn new(
        file: &str,
        layout: Layout,
        schema: &SchemaRef,
        batch_rows: usize,
        pool: &BufferPool,
        wide_metrics: bool,
    ) -> Option<FastText> {
        let names: std::collections::HashSet<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let roles = ColumnMap::from_schema(file, schema).ok().filter(|_| names.len() == schema.fields().len());
        let numbers = |name: &str| match &roles {
            Some(r) if [r.step.as_deref(), Some(&r.layer), Some(&r.position)].contains(&Some(name)) => {
                Numbers::I64(Vec::new())
            }
            Some(r) if !wide_metrics && r.metrics.iter().any(|m| m == name) => Numbers::F32(Vec::new()),
            _ => Numbers::F64(Vec::new()),
        };
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        for f in schema.fields() {
            let known_text = is_dictionary_text(f.name());
            let c = match f.data_type() {
                DataType::Float64 => Column::Number {
                    values: numbers(f.name()),
                    validity: Validity::default(),
                    last: LastNumber::default(),
                },
                DataType::Utf8 | DataType::Dictionary(_, _) if known_text => Column::Dict(DictColumn::new()),
                DataType::Utf8 => Column::Text {
                    offsets: vec![0],
                    data: Vec::new(),
                    validity: Validity::default(),
                },
                DataType::Dictionary(k, v) if k.as_ref() == &DataType::Int32 && v.as_ref() == &DataType::Utf8 => {
                    Column::Dict(DictColumn::new())
                }
                _ => return None,
            };
            let t = match &c {
                Column::Number { values, .. } => values.data_type(),
                Column::Dict(_) => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                Column::Text { .. } => DataType::Utf8,
            };
            fields.push(Field::new(f.name(), t, true));
            columns.push(c);
        }
        let batch_rows = batch_rows.max(1);
        // JSON keys are matched by their raw bytes: a name that JSON would escape is unusual.
        if layout == Layout::Json
            && schema.fields().iter().any(|f| f.name().bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20))
        {
            return None;
        }
        Some(FastText {
            file: file.to_string(),
            layout,
            keys: schema.fields().iter().map(|f| f.name().as_bytes().to_vec()).collect(),
            seen: vec![false; columns.len()],
            schema: Arc::new(Schema::new(fields)),
            columns,
            rows: 0,
            batch_rows,
            held: Vec::new(),
            header_done: layout == Layout::Json,
            json_at: JsonAt::Start,
            records: 0,
            fields: Vec::new(),
            pool: pool.clone(),
        })
    }

    /// Whether the CSV header row has been read (always true for JSON).
    pub(super) fn header_done(&self) -> bool {
        self.header_done
    }

    /// The end of the file: the rows held are handed over; `Fed::Fallback` when what is left
    /// (a cut record, an array never closed) is for the general decoder to judge.
    pub(super) fn finish(&mut self, emit: &mut dyn FnMut(RecordBatch) -> Result<(), IngestError>) -> Result<Fed, IngestError> {
        if let Fed::Fallback(rest) = self.decode(&[], true, emit)? {
            return Ok(Fed::Fallback(rest));
        }
        self.flush(emit)?;
        if self.in_json_array() {
            return Ok(Fed::Fallback(Vec::new()));
        }
        Ok(Fed::Taken)
    }

    /// Data records handed over so far.
    pub(super) fn records(&self) -> u64 {
        self.records
    }

    /// Whether the JSON stream is inside its top-level array (the general decoder then needs
    /// an opening `[` before the rest).
    pub(super) fn in_json_array(&self) -> bool {
        matches!(self.json_at, JsonAt::ArrayValue | JsonAt::ArrayNext)
    }

    /// Take the next bytes of the file (`at_eof`: they are the last); full batches go to
    /// `emit`.
    pub(super) fn decode(
        &mut self,
        buf: &[u8],
        at_eof: bool,
        emit: &mut dyn FnMut(RecordBatch) -> Result<(), IngestError>,
    ) -> Result<Fed, IngestError> {
        let mut start = 0;
        if !self.held.is_empty() {
            // Finish the held record with as few bytes of `buf` as needed (copying the whole
            // chunk behind it would cost a pass over every byte), then go on in `buf` itself.
            let mut held = std::mem::take(&mut self.held);
            let mut old = held.len();
            let mut taken = 0;
            loop {
                let n = (buf.len() - taken).min(held.len().max(64 << 10));
                held.extend_from_slice(&buf[taken..taken + n]);
                taken += n;
                let last = taken == buf.len();
                let (at, unusual) = self.run(&held, 0, at_eof && last, emit)?;
                if unusual {
                    self.flush(emit)?;
                    let mut rest = held[at..].to_vec();
                    rest.extend_from_slice(&buf[taken..]);
                    return Ok(Fed::Fallback(rest));
                }
                if at >= old {
                    start = at - old;
                    break;
                }
                held.drain(..at);
                old -= at;
                if last {
                    if at_eof && !held.is_empty() {
                        self.flush(emit)?;
                        return Ok(Fed::Fallback(held));
                    }
                    self.held = held;
                    return Ok(Fed::Taken);
                }
            }
        }
        let (at, unusual) = self.run(buf, start, at_eof, emit)?;
        if unusual || (at_eof && at < buf.len()) {
            // Something unusual, or a record the end of the file cuts: the general decoder
            // judges it.
            self.flush(emit)?;
            return Ok(Fed::Fallback(buf[at..].to_vec()));
        }
        self.held = buf[at..].to_vec();
        Ok(Fed::Taken)
    }

    /// Decode the records of `data` from `at` on; returns where it stopped and whether it
    /// stopped at something unusual (else at a record that `data` does not hold whole).
    fn run(
        &mut self,
        data: &[u8],
        mut at: usize,
        at_eof: bool,
        emit: &mut dyn FnMut(RecordBatch) -> Result<(), IngestError>,
    ) -> Result<(usize, bool), IngestError> {
        loop {
            if at >= data.len() {
                return Ok((at, false));
            }
            if self.rows >= self.batch_rows {
                self.flush(emit)?;
            }
            if self.rows == 0 {
                // Room for the batch at once, rather than growing from nothing row by row:
                // taken here, when a row comes, not when the last batch is handed over (a
                // decoder whose input had ended then dropped the buffers it took, and the pool
                // missed a fifth of its takes on the seed CSV's segments).
                self.columns.iter_mut().for_each(|c| c.reserve(self.batch_rows, &self.pool));
            }
            let r = match self.layout {
                Layout::Csv(delim) => self.csv_record(data, at, delim, at_eof),
                Layout::Json => self.json_step(data, at, at_eof),
            };
            match r {
                Rec::Done(end) => at = end,
                Rec::More => return Ok((at, false)),
                Rec::Unusual => return Ok((at, true)),
            }
        }
    }

    /// Hand over the rows held.
    pub(super) fn flush(&mut self, emit: &mut dyn FnMut(RecordBatch) -> Result<(), IngestError>) -> Result<(), IngestError> {
        if self.rows == 0 {
            return Ok(());
        }
        let arrays = self.columns.iter_mut().map(Column::take).collect::<Result<Vec<_>, _>>();
        let batch = arrays
            .and_then(|a| RecordBatch::try_new(self.schema.clone(), a))
            .map_err(|e| IngestError::Read {
                file: self.file.clone(),
                message: format!("internal error assembling decoded rows: {e}"),
            })?;
        self.records += self.rows as u64;
        self.rows = 0;
        emit(batch)
    }

    /// Undo a partly added row (its record is not for the fast path or not complete).
    fn undo_row(&mut self) {
        let rows = self.rows;
        for c in &mut self.columns {
            c.truncate(rows);
        }
    }

    // ---- CSV ----

    /// One CSV record from `data[at..]`.
    fn csv_record(&mut self, data: &[u8], at: usize, delim: u8, at_eof: bool) -> Rec {
        if self.header_done {
            match self.csv_row_direct(data, at, delim) {
                Some(end) => {
                    self.rows += 1;
                    return Rec::Done(end);
                }
                // Anything else (a quoted new text, a null word, the end of the bytes, …) is
                // split and judged field by field below.
                None => self.undo_row(),
            }
        }
        let mut fields = std::mem::take(&mut self.fields);
        fields.clear();
        let r = split_csv_record(data, at, delim, at_eof, &mut fields);
        let r = match r {
            Rec::Done(end) if !self.header_done => {
                self.header_done = true;
                Rec::Done(end)
            }
            Rec::Done(end) => {
                if fields.len() != self.columns.len() {
                    Rec::Unusual
                } else if self.csv_row(data, &fields) {
                    self.rows += 1;
                    Rec::Done(end)
                } else {
                    self.undo_row();
                    Rec::Unusual
                }
            }
            other => other,
        };
        self.fields = fields;
        r
    }

    /// The common record, parsed in one pass without splitting it first: plain decimals in
    /// number columns, repeated or unquoted text in text columns, empty fields, a `\n` or
    /// `\r\n` at the end. Returns the end of the record, or `None` (the row possibly partly
    /// added) for anything else.
    fn csv_row_direct(&mut self, data: &[u8], mut i: usize, delim: u8) -> Option<usize> {
        prefetch_ahead(data, i);
        let (last, body) = self.columns.split_last_mut()?;
        for column in body {
            i = csv_field_direct(column, data, i, delim, false)?;
        }
        csv_field_direct(last, data, i, delim, true)
    }

    /// Add one record's fields as a row; `false` if a field is unusual.
    fn csv_row(&mut self, data: &[u8], fields: &[(usize, usize, bool)]) -> bool {
        for (c, &(s, e, quoted)) in self.columns.iter_mut().zip(fields) {
            // The raw field, quotes included when quoted.
            let raw = &data[s..e];
            let inner = if quoted { &raw[1..raw.len() - 1] } else { raw };
            if inner.is_empty() {
                c.push_null();
                continue;
            }
            match c {
                Column::Number { values, validity, .. } => {
                    match parse_number(inner, quoted) {
                        Some(v) => values.push(v, validity),
                        // A word for "no value" can mean nothing else in a number column
                        // (see the module docs).
                        None if is_null_word(inner) => c.push_null(),
                        None => return false,
                    }
                }
                Column::Dict(_) | Column::Text { .. } => {
                    if let Column::Dict(d) = c {
                        if d.push_repeat_if(|r| same_bytes(r, raw)) {
                            continue;
                        }
                    }
                    let text = if quoted { unquote_csv(inner) } else { std::borrow::Cow::Borrowed(inner) };
                    let Ok(text) = std::str::from_utf8(&text) else {
                        return false;
                    };
                    c.push_text(text, raw);
                }
            }
        }
        true
    }

    // ---- JSON ----

    /// One step of a JSON stream from `data[at..]`: a separator, a record, or the end.
    fn json_step(&mut self, data: &[u8], at: usize, at_eof: bool) -> Rec {
        let i = skip_ws(data, at);
        let Some(&b) = data.get(i) else {
            return Rec::More;
        };
        match (self.json_at, b) {
            (JsonAt::Start, b'[') => {
                self.json_at = JsonAt::ArrayValue;
                Rec::Done(i + 1)
            }
            (JsonAt::Start, b'{') => {
                self.json_at = JsonAt::Lines;
                Rec::Done(i)
            }
            (JsonAt::ArrayNext, b',') => {
                self.json_at = JsonAt::ArrayValue;
                Rec::Done(i + 1)
            }
            (JsonAt::ArrayNext, b']') => {
                self.json_at = JsonAt::ArrayDone;
                Rec::Done(i + 1)
            }
            (JsonAt::ArrayValue | JsonAt::Lines, b'{') => match self.json_record(data, i) {
                Rec::Done(end) => {
                    if self.json_at == JsonAt::ArrayValue {
                        self.json_at = JsonAt::ArrayNext;
                    }
                    Rec::Done(end)
                }
                Rec::More if at_eof => Rec::Unusual,
                other => other,
            },
            _ => Rec::Unusual,
        }
    }

    /// One JSON object starting at `data[at] == b'{'`, as a row.
    fn json_record(&mut self, data: &[u8], at: usize) -> Rec {
        self.seen.iter_mut().for_each(|s| *s = false);
        let r = self.json_fields(data, at + 1);
        match r {
            Rec::Done(end) => {
                let rows = self.rows;
                for (c, seen) in self.columns.iter_mut().zip(&self.seen) {
                    if !seen {
                        c.push_null();
                    }
                    debug_assert_eq!(c.len(), rows + 1);
                }
                self.rows += 1;
                Rec::Done(end)
            }
            other => {
                self.undo_row();
                other
            }
        }
    }

    fn json_fields(&mut self, data: &[u8], mut i: usize) -> Rec {
        let mut next_col = 0;
        i = skip_ws(data, i);
        match data.get(i) {
            None => return Rec::More,
            Some(b'}') => return Rec::Done(i + 1),
            _ => {}
        }
        loop {
            // Key.
            if data.get(i) != Some(&b'"') {
                return if i >= data.len() { Rec::More } else { Rec::Unusual };
            }
            // Keys come in the same order on every row: try the expected one first, compared
            // in place (no scan for the closing quote).
            let (col, key_end) = match self.keys.get(next_col).filter(|k| quoted_at(data, i + 1, k)) {
                Some(k) => (next_col, i + 1 + k.len()),
                None => {
                    let Some((key_end, escaped)) = string_end(data, i + 1) else {
                        return Rec::More;
                    };
                    if escaped {
                        return Rec::Unusual;
                    }
                    let key = &data[i + 1..key_end];
                    match self.keys.iter().position(|k| k == key) {
                        Some(c) => (c, key_end),
                        None => return Rec::Unusual,
                    }
                }
            };
            if self.seen[col] {
                return Rec::Unusual;
            }
            self.seen[col] = true;
            next_col = col + 1;
            i = skip_ws(data, key_end + 1);
            match data.get(i) {
                None => return Rec::More,
                Some(b':') => {}
                Some(_) => return Rec::Unusual,
            }
            i = skip_ws(data, i + 1);
            let Some(&b) = data.get(i) else {
                return Rec::More;
            };
            // Value.
            let column = &mut self.columns[col];
            match b {
                b'"' => match column.push_repeat_at(data, i + 1, true) {
                    // A remembered text again, compared in place: no scan for the end.
                    Some(n) => i += n + 2,
                    None => {
                        let Some((end, escaped)) = string_end(data, i + 1) else {
                            return Rec::More;
                        };
                        let raw = &data[i + 1..end];
                        // (Not a remembered text: those were found above.) A number written
                        // as text is unusual: the general decoder's rules apply.
                        let Some(text) = json_text(&data[i..=end], raw, escaped) else {
                            return Rec::Unusual;
                        };
                        if !column.push_text(&text, raw) {
                            return Rec::Unusual;
                        }
                        i = end + 1;
                    }
                },
                b'n' => {
                    if data.len() < i + 4 {
                        return Rec::More;
                    }
                    if &data[i..i + 4] != b"null" {
                        return Rec::Unusual;
                    }
                    column.push_null();
                    i += 4;
                }
                b'-' | b'0'..=b'9' => {
                    let Column::Number { values, validity, .. } = column else {
                        return Rec::Unusual;
                    };
                    let in_number = |c: &u8| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
                    // The usual short decimal in place; else the whole token, found first.
                    let (v, end) = match scan_short_decimal(&data[i..]) {
                        Some((v, len))
                            if data.get(i + len).is_some_and(|c| !in_number(c))
                                && !json_leading_zero(&data[i..i + len]) =>
                        {
                            (v, i + len)
                        }
                        _ => {
                            let end = i + data[i..].iter().position(|c| !in_number(c)).unwrap_or(data.len() - i);
                            if end >= data.len() {
                                return Rec::More;
                            }
                            let Some(v) = parse_json_number(&data[i..end]) else {
                                return Rec::Unusual;
                            };
                            (v, end)
                        }
                    };
                    values.push(v, validity);
                    i = end;
                }
                _ => return Rec::Unusual,
            }
            i = skip_ws(data, i);
            match data.get(i) {
                None => return Rec::More,
                Some(b',') => i = skip_ws(data, i + 1),
                Some(b'}') => return Rec::Done(i + 1),
                Some(_) => return Rec::Unusual,
            }
        }
    }
}

/// How far ahead of a CSV record [`prefetch_ahead`] asks for the file's bytes. They come from
/// memory the CPU has not seen (the page cache, mapped), and its own prefetcher stops at every
/// 4 KiB page: on the seed CSV, 13-18% of the reading time was in `memcmp` (the long prompt
/// text compared with the previous row's), waiting at its loads. 1 to 8 KiB ahead measured
/// alike; 2 KiB is about a dozen records. (JSON records measured no faster with it.)
const PREFETCH_AHEAD: usize = 2048;

/// Asks the CPU to fetch into its caches the four cache lines (more than a usual CSV record)
/// [`PREFETCH_AHEAD`] bytes on from `at` in `data`; nothing on other targets than x86-64.
#[inline(always)]
fn prefetch_ahead(data: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // `wrapping_add`: the address may lie past the end of `data`; it is never read.
        let p = data.as_ptr().wrapping_add(at + PREFETCH_AHEAD) as *const i8;
        for line in 0..4 {
            // SAFETY: a prefetch is a hint; it reads nothing and cannot fault, whatever the
            // address (SSE, which every x86-64 CPU has).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, at, PREFETCH_AHEAD);
}

/// One field of a one-pass CSV record (see [`FastText::csv_row_direct`]) at `data[i]`, added to
/// `column`; returns where the next field starts, after the delimiter (or, for the `last`
/// field, the line break). `None` for anything the one-pass record does not take.
#[inline(always)]
fn csv_field_direct(column: &mut Column, data: &[u8], i: usize, delim: u8, last: bool) -> Option<usize> {
    // The length of the delimiter or line break that must close this field at `at`.
    let closes = |at: usize| -> Option<usize> {
        let b = *data.get(at)?;
        if !last {
            (b == delim).then_some(1)
        } else if b == b'\n' {
            Some(1)
        } else {
            (b == b'\r' && data.get(at + 1) == Some(&b'\n')).then_some(2)
        }
    };
    // The length of an unquoted field at `at` (not empty, not cut by the end of `data`).
    let unquoted = |at: usize| -> Option<usize> {
        let end = unquoted_end(data, at, delim);
        (end > at && end < data.len()).then(|| end - at)
    };
    let len = match column {
        Column::Number { values, validity, last: remembered } => {
            // The previous row's field again (its delimiter or line break included).
            if let Some(n) = remembered.again_at(data, i) {
                values.push(remembered.value, validity);
                return Some(i + n);
            }
            // A plain decimal in place; any other unquoted number (`1e-05`, as pandas writes
            // small floats) as the field splitter's path parses it; an empty field is null.
            let (v, len) = match scan_plain_decimal(data.get(i..)?) {
                Some((v, len)) if closes(i + len).is_some() => (v, len),
                _ => {
                    if let Some(n) = closes(i) {
                        column.push_null();
                        return Some(i + n);
                    }
                    let n = unquoted(i)?;
                    match parse_number(&data[i..i + n], false) {
                        Some(v) => (v, n),
                        None if is_null_word(&data[i..i + n]) => {
                            column.push_null();
                            return Some(i + n + closes(i + n)?);
                        }
                        None => return None,
                    }
                }
            };
            let end = closes(i + len)?;
            values.push(v, validity);
            remembered.remember(data, i, len + end, v);
            return Some(i + len + end);
        }
        _ => {
            // Text. A remembered text's raw bytes again, quotes included: if the same
            // delimiter follows, they split the same way.
            if let Some(n) = column.push_repeat_at(data, i, false) {
                return Some(i + n + closes(i + n)?);
            }
            // An empty field is null, anything else unquoted text.
            if let Some(n) = closes(i) {
                column.push_null();
                return Some(i + n);
            }
            let n = unquoted(i)?;
            if !column.push_unquoted_text(&data[i..i + n]) {
                return None;
            }
            n
        }
    };
    Some(i + len + closes(i + len)?)
}

/// Text columns that the decoders read into dictionaries.
fn is_dictionary_text(name: &str) -> bool {
    ["token_masked", "variant", "prompt_name", "config_prompt"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(name))
}

/// The index of the first byte from `i` on that is not JSON white space (`data.len()` if
/// none).
pub(super) fn skip_ws(data: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = data.get(i) {
        i += 1;
    }
    i
}

/// The offset of the closing quote of a JSON string whose text starts at `from`, and whether
/// the string holds escapes; `None` if the data ends first.
fn string_end(data: &[u8], mut from: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        let j = from + memchr::memchr2(b'"', b'\\', &data[from..])?;
        if data[j] == b'"' {
            return Some((j, escaped));
        }
        escaped = true;
        // Skip the escaped byte (`\"` and `\\` included).
        from = j + 2;
        if from > data.len() {
            return None;
        }
    }
}

/// Whether `data` holds `raw` at `at` followed by the closing quote: the same JSON string
/// body as `raw` (which ended at an unescaped quote: the same bytes scan the same way).
#[inline(always)]
fn quoted_at(data: &[u8], at: usize, raw: &[u8]) -> bool {
    raw_at(data, at, raw) && data.get(at + raw.len()) == Some(&b'"')
}

/// `a == b`, with short slices (tokens, variant names) compared in place as two overlapping
/// words rather than by a call to `memcmp`.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or_default());
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// The text of a JSON string (`quoted`: with its quotes; `raw`: without), unescaped and
/// checked; `None` if it is not valid JSON text.
fn json_text<'a>(quoted: &[u8], raw: &'a [u8], escaped: bool) -> Option<std::borrow::Cow<'a, str>> {
    if escaped {
        return serde_json::from_slice::<String>(quoted).ok().map(std::borrow::Cow::Owned);
    }
    if raw.iter().any(|&b| b < 0x20) {
        return None;
    }
    std::str::from_utf8(raw).ok().map(std::borrow::Cow::Borrowed)
}

/// Split one CSV record starting at `data[at]` into field ranges `(start, end, quoted)`
/// (quoted: the range includes both quotes).
fn split_csv_record(data: &[u8], at: usize, delim: u8, at_eof: bool, fields: &mut Vec<(usize, usize, bool)>) -> Rec {
    let mut i = at;
    if i >= data.len() {
        return Rec::More;
    }
    // A blank line: the general decoder's rules.
    if matches!(data[i], b'\n' | b'\r') {
        return Rec::Unusual;
    }
    loop {
        let start = i;
        if data.get(i) == Some(&b'"') {
            // Quoted: up to a quote not followed by another quote.
            let mut j = i + 1;
            loop {
                let Some(q) = memchr::memchr(b'"', &data[j..]) else {
                    return if at_eof { Rec::Unusual } else { Rec::More };
                };
                let q = j + q;
                match data.get(q + 1) {
                    Some(b'"') => j = q + 2,
                    None if !at_eof => return Rec::More,
                    _ => {
                        i = q + 1;
                        break;
                    }
                }
            }
            fields.push((start, i, true));
        } else {
            let end = unquoted_end(data, i, delim);
            match data.get(end) {
                None if !at_eof => return Rec::More,
                // A quote inside an unquoted field; a `\r` is checked where the record ends.
                Some(b'"') => return Rec::Unusual,
                _ => {}
            }
            fields.push((start, end, false));
            i = end;
        }
        match data.get(i) {
            Some(&b) if b == delim => i += 1,
            Some(b'\n') => return Rec::Done(i + 1),
            Some(b'\r') => match data.get(i + 1) {
                Some(b'\n') => return Rec::Done(i + 2),
                None if !at_eof => return Rec::More,
                _ => return Rec::Unusual,
            },
            None if at_eof => return Rec::Done(i),
            None => return Rec::More,
            Some(_) => return Rec::Unusual,
        }
        if i >= data.len() {
            if !at_eof {
                return Rec::More;
            }
            // A delimiter at the very end: one more, empty field.
            fields.push((i, i, false));
            return Rec::Done(i);
        }
    }
}

/// Where an unquoted CSV field starting at `from` ends: at the first delimiter, line break or
/// quote, or at the end of `data`. Unquoted fields are short (numbers, tokens): a plain loop
/// beats a vector search.
fn unquoted_end(data: &[u8], from: usize, delim: u8) -> usize {
    let mut end = from;
    while let Some(&b) = data.get(end) {
        if b == delim || b == b'\n' || b == b'"' || b == b'\r' {
            break;
        }
        end += 1;
    }
    end
}

/// The text of a quoted CSV field (without its quotes): `""` → `"`.
fn unquote_csv(inner: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !inner.contains(&b'"') {
        return std::borrow::Cow::Borrowed(inner);
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        out.push(inner[i]);
        i += if inner[i] == b'"' { 2 } else { 1 };
    }
    std::borrow::Cow::Owned(out)
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A plain decimal `-?\d+(\.\d+)?` with at most 15 significant digits, exactly (Clinger's
/// fast path: both the mantissa and the power of ten are exact doubles, one division rounds
/// correctly). `None` for anything else.
fn parse_plain_decimal(s: &[u8]) -> Option<f64> {
    match scan_plain_decimal(s)? {
        (v, len) if len == s.len() => Some(v),
        _ => None,
    }
}

/// The plain decimal at the start of `s` (see [`parse_plain_decimal`]) and its length in
/// bytes: it ends at the first byte that is neither a digit nor its one `.`. `None` when that
/// prefix is not a plain decimal of at most 15 significant digits.
#[inline(always)]
fn scan_plain_decimal(s: &[u8]) -> Option<(f64, usize)> {
    match scan_short_decimal(s) {
        Some(r) => Some(r),
        None => scan_plain_decimal_bytewise(s),
    }
}

/// [`scan_plain_decimal`] for the usual case, eight bytes at a time: up to seven digits, then
/// optionally a `.` and up to seven digits, with eight bytes readable after each start.
/// `None`: anything else (then the byte-wise scan decides).
#[inline(always)]
fn scan_short_decimal(s: &[u8]) -> Option<(f64, usize)> {
    let neg = *s.first()? == b'-';
    let start = neg as usize;
    let w = word_at(s, start)?;
    let n = leading_digits(w);
    if n == 0 || n == 8 {
        return None;
    }
    let mut end = start + n;
    let mut mantissa = digits_value(w, n);
    let mut frac_digits = 0;
    if s[end] == b'.' {
        let w = word_at(s, end + 1)?;
        let f = leading_digits(w);
        if f == 0 || f == 8 {
            return None;
        }
        // At most 14 digits in all: exact in a u64 and in a double.
        mantissa = mantissa * POW10_U64[f] + digits_value(w, f);
        frac_digits = f;
        end += 1 + f;
    }
    Some((decimal_value(neg, mantissa, frac_digits), end))
}

/// The byte-wise [`scan_plain_decimal`]: any number of leading zeros and digits.
fn scan_plain_decimal_bytewise(s: &[u8]) -> Option<(f64, usize)> {
    let (neg, start) = match s.first()? {
        b'-' => (true, 1),
        _ => (false, 0),
    };
    let mut mantissa: u64 = 0;
    let mut n_digits = 0usize;
    let mut frac_digits = 0usize;
    let mut dot = None;
    let mut i = start;
    while let Some(&b) = s.get(i) {
        match b {
            b'0'..=b'9' => {
                if mantissa != 0 || b != b'0' {
                    // Leading zeros do not count as significant digits.
                    n_digits += 1;
                }
                mantissa = mantissa * 10 + (b - b'0') as u64;
                if dot.is_some() {
                    frac_digits += 1;
                }
                if n_digits > 15 || frac_digits > 22 {
                    return None;
                }
            }
            b'.' if dot.is_none() => dot = Some(i),
            _ => break,
        }
        i += 1;
    }
    // `1.` and `.5` are left to the general parser, as are empty digits.
    if i == start || dot == Some(start) || dot == Some(i - 1) {
        return None;
    }
    Some((decimal_value(neg, mantissa, frac_digits), i))
}

/// `±mantissa / 10^frac_digits`, correctly rounded (the mantissa is below 2^53).
#[inline(always)]
fn decimal_value(neg: bool, mantissa: u64, frac_digits: usize) -> f64 {
    // At most 16 digits: below 2^63, where the signed conversion (one instruction on x86-64,
    // the unsigned one is five) gives the same value.
    debug_assert!(mantissa < 1 << 63);
    let m = mantissa as i64 as f64;
    // Integers (steps, layers, positions) need no division.
    let v = match frac_digits {
        0 => m,
        f => m / POW10[f],
    };
    if neg {
        -v
    } else {
        v
    }
}

const POW10_U64: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// The eight bytes of `s` at `at` as a little-endian word (the byte at `at` lowest).
#[inline(always)]
fn word_at(s: &[u8], at: usize) -> Option<u64> {
    let bytes = s.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// How many of the first bytes of `w` (lowest first) are ASCII digits: 0 to 8.
#[inline(always)]
fn leading_digits(w: u64) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // Per byte, with no carry or borrow between bytes: the high bit of `at_least_0` is set
    // when the low seven bits are ≥ '0', that of `above_9` when they are > '9'; a digit also
    // has its own high bit clear.
    let at_least_0 = ((w & LOW7) | HIGH) - 0x3030_3030_3030_3030;
    let above_9 = (w & LOW7) + 0x4646_4646_4646_4646;
    let digit = at_least_0 & !above_9 & !w & HIGH;
    ((!digit & HIGH).trailing_zeros() / 8) as usize
}

/// The value of the first `n` (1 to 8) bytes of `w`, ASCII digits, the first the most
/// significant (eight digits at once, as in fast_float).
#[inline(always)]
fn digits_value(w: u64, n: usize) -> u64 {
    debug_assert!((1..=8).contains(&n));
    let w = if n == 8 {
        w
    } else {
        // Move the digits up to the last bytes, and fill the first with '0'.
        let shift = 8 * (8 - n as u32);
        (w << shift) | (0x3030_3030_3030_3030 >> (64 - shift))
    };
    let v = w - 0x3030_3030_3030_3030;
    let v = v * 10 + (v >> 8);
    let v1 = (v & 0x0000_00ff_0000_00ff).wrapping_mul(100 + (1_000_000 << 32));
    let v2 = ((v >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32));
    (v1.wrapping_add(v2) >> 32) as u32 as u64
}

/// A CSV number field as arrow-csv reads it (`Float64` parser of arrow-cast), with the fast
/// path first. `None`: not a number.
fn parse_number(field: &[u8], quoted: bool) -> Option<f64> {
    if !quoted {
        if let Some(v) = parse_plain_decimal(field) {
            return Some(v);
        }
    }
    let text = if quoted { unquote_csv(field) } else { std::borrow::Cow::Borrowed(field) };
    let text = std::str::from_utf8(&text).ok()?;
    <arrow_array::types::Float64Type as arrow_cast::parse::Parser>::parse(text)
}

/// Whether a plain decimal token has a leading zero that JSON forbids (`01`, `-00.5`).
fn json_leading_zero(token: &[u8]) -> bool {
    let d = token.strip_prefix(b"-").unwrap_or(token);
    d.len() > 1 && d[0] == b'0' && d[1] != b'.'
}

/// A JSON number token, exactly. `None`: not a valid JSON number.
fn parse_json_number(token: &[u8]) -> Option<f64> {
    if let Some(v) = parse_plain_decimal(token) {
        // JSON forbids leading zeros (`01`): leave those to the general decoder.
        return (!json_leading_zero(token)).then_some(v);
    }
    let text = std::str::from_utf8(token).ok()?;
    // Rust's parser rounds correctly, as arrow-json's does; the JSON grammar is checked by
    // serde_json on this rare path.
    serde_json::from_str::<serde_json::Number>(text).ok()?;
    text.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;

    #[test]
    fn plain_decimals_are_exact() {
        for s in ["0", "1", "-1", "772.7286", "0.8939", "-0.0153", "123456789012345", "0.000001", "1.5", "100"] {
            assert_eq!(parse_plain_decimal(s.as_bytes()), Some(s.parse::<f64>().unwrap()), "{s}");
        }
        for s in ["", "-", ".5", "1.", "1e5", "1.2.3", "nan", "1234567890123456", " 1", "+1"] {
            assert_eq!(parse_plain_decimal(s.as_bytes()), None, "{s}");
        }
    }

    /// The eight-bytes-at-a-time scan agrees with the byte-wise one (and so with the exact
    /// parse above) on every prefix of numbers and near-numbers, read from inside a longer
    /// buffer as the CSV decoder reads them.
    #[test]
    fn short_decimals_scan_as_bytewise() {
        let numbers = [
            "0", "7", "-0", "-7", "12", "772.7286", "0.8939", "-0.0153", "1234567", "12345678", "1234567.1234567",
            "1234567.12345678", "0000001.5", "00000001", ".5", "1.", "-.5", "1.2.3", "1e-05", "9999999.9999999",
            "3.14159", "-", "--1", "1-2", "0.0", "10.01", "\u{660}", "5\u{ff10}",
        ];
        let tails = ["", ",", "\n", ",Full,x", "\r\n", "\"", "/", ":", "9", ".", "\u{80}", "\u{b9}"];
        for n in numbers {
            for t in tails {
                for pad in 0..10 {
                    let text = format!("{n}{t}{}", "x".repeat(pad));
                    let b = text.as_bytes();
                    for cut in 0..=b.len() {
                        let s = &b[..cut];
                        let want = scan_plain_decimal_bytewise(s);
                        let got = scan_plain_decimal(s);
                        assert_eq!(
                            got.map(|(v, l)| (v.to_bits(), l)),
                            want.map(|(v, l)| (v.to_bits(), l)),
                            "{s:?}"
                        );
                        if let Some((v, l)) = scan_short_decimal(s) {
                            assert_eq!(v, std::str::from_utf8(&s[..l]).unwrap().parse::<f64>().unwrap(), "{s:?}");
                        }
                    }
                }
            }
        }
        // Every byte value after the digits, on both scans.
        for b in 0..=255u8 {
            let mut s = b"12.5".to_vec();
            s.push(b);
            s.extend_from_slice(b"12345678");
            assert_eq!(scan_plain_decimal(&s), scan_plain_decimal_bytewise(&s), "{b}");
            let mut s = vec![b'4', b];
            s.extend_from_slice(b"0000000000");
            assert_eq!(scan_plain_decimal(&s), scan_plain_decimal_bytewise(&s), "{b}");
        }
    }

    #[test]
    fn validity_stores_rows_only_after_a_null() {
        let bits = |v: &mut Validity| v.take().map(|n| n.iter().collect::<Vec<bool>>());
        let mut v = Validity::default();
        v.push_valid();
        v.push_valid();
        assert_eq!(bits(&mut v), None);
        // Rows 0-1 valid, 2 null, 3 valid; then undone back to 3 rows and back to 2.
        v.push_valid();
        v.push_valid();
        v.push_null(2);
        v.push_valid();
        v.truncate(3);
        assert_eq!(v.nulls, 1);
        v.push_valid();
        assert_eq!(bits(&mut v), Some(vec![true, true, false, true]));
        // A null undone leaves no nulls; a later null starts its rows afresh.
        v.push_valid();
        v.push_null(1);
        v.truncate(1);
        v.push_valid();
        v.push_null(2);
        assert_eq!(bits(&mut v), Some(vec![true, true, false]));
        // Taking leaves nothing behind.
        v.push_valid();
        assert_eq!(bits(&mut v), None);
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for n in 0..=20 {
            for from in 0..8 {
                let a = &text[from..from + n];
                // The same bytes at another address.
                let copy = a.to_vec();
                assert!(same_bytes(a, &copy));
                assert!(!same_bytes(a, &text[from..from + n + 1]));
                // One byte changed anywhere makes them differ.
                for k in 0..n {
                    let mut b = a.to_vec();
                    b[k] ^= 0x20;
                    assert!(!same_bytes(a, &b), "{n} {k}");
                }
            }
        }
    }

    #[test]
    fn csv_records_split_with_quotes() {
        let data = b"a,\"b,\"\"c\"\"\nd\",\r\nx";
        let mut f = Vec::new();
        let r = split_csv_record(data, 0, b',', false, &mut f);
        assert!(matches!(r, Rec::Done(16)));
        assert_eq!(f, vec![(0, 1, false), (2, 13, true), (14, 14, false)]);
        assert_eq!(unquote_csv(&data[3..12]).as_ref(), b"b,\"c\"\nd");
        // The last record without a newline is complete only at the end of the file.
        f.clear();
        assert!(matches!(split_csv_record(data, 16, b',', false, &mut f), Rec::More));
        f.clear();
        assert!(matches!(split_csv_record(data, 16, b',', true, &mut f), Rec::Done(17)));
        // A quote inside an unquoted field, a lone CR, a blank line: not for the fast path.
        for bad in [&b"a,b\"c\n"[..], b"a\rb,c\n", b"\n"] {
            f.clear();
            assert!(matches!(split_csv_record(bad, 0, b',', true, &mut f), Rec::Unusual), "{bad:?}");
        }
    }

    #[test]
    fn json_strings_end_after_escapes() {
        assert_eq!(string_end(br#"ab\"c\\"x"#, 0), Some((7, true)));
        assert_eq!(string_end(br#"abc"x"#, 0), Some((3, false)));
        assert_eq!(string_end(br#"ab\"#, 0), None);
        assert_eq!(json_text(br#""a\nb""#, br#"a\nb"#, true).as_deref(), Some("a\nb"));
    }
    /// Reads `bytes` through the whole ingest, at every chunk size given (the fast path and its
    /// hand-over to the general decoder must not depend on where chunks end).
    fn read_all(name: &str, bytes: &[u8]) -> Vec<Result<crate::cube::Cube, String>> {
        [1u64, 2, 5, 17, 1 << 20]
            .into_iter()
            .map(|chunk| {
                let b = bytes::Bytes::copy_from_slice(bytes);
                let mut ingest = super::super::Ingest::new(name, b.len() as u64).with_text_chunk_bytes(chunk);
                super::super::drive(&mut ingest, |r| Ok(b.slice(r.start as usize..r.end as usize)), |_| true)
                    .map_err(|e| e.to_string())?;
                ingest.finish().map_err(|e| e.to_string())
            })
            .collect()
    }

    #[test]
    fn csv_unusual_record_hands_over_and_values_stay_right() {
        // Row 3 has a quote inside an unquoted token (csv reads it literally): from there on
        // arrow-csv reads; the values (hand-written here) must be the same either way.
        let csv = b"layer,token_position,token_masked,l2_distance,config_prompt\n\
0,0,\"a,\"\"b\"\"\n\",1.5,\"long\nprompt\"\n\
0,1,x,2.25,\"long\nprompt\"\n\
0,2,q\"r,1e2,\"long\nprompt\"\n\
0,3,y,,\"long\nprompt\"\n";
        for cube in read_all("u.csv", csv) {
            let cube = cube.unwrap();
            let p = &cube.prompts[0];
            assert_eq!(p.token(0), Some("a,\"b\"\n"));
            assert_eq!(p.token(1), Some("x"));
            assert_eq!(p.token(2), Some("q\"r"));
            assert_eq!(p.token(3), Some("y"));
            assert_eq!(p.text.as_deref(), Some("long\nprompt"));
            let at = cube.cell(0, 0, 0, 0);
            assert_eq!(cube.value(0, at, 0), Some(1.5));
            assert_eq!(cube.value(0, at, 1), Some(2.25));
            assert_eq!(cube.value(0, at, 2), Some(100.0));
            assert_eq!(cube.value(0, at, 3), None);
        }
    }

    #[test]
    fn csv_numbers_read_again_from_their_bytes_keep_their_values() {
        // Fields that repeat the previous row's bytes, and fields that differ from them only
        // after the bytes remembered (a longer number, another end), or in the last of eight.
        let csv = "generation_step,layer,token_position,l2_distance\n\
7,3,0,0.5\n\
7,3,0,0.5\n\
7,31,1,0.5\r\n\
7,31,1,0.5\r\n\
7,3,1,0.5\n\
7,,1,0.55\n\
7,3,123456,0.55\n\
7,3,123457,0.55\n\
7,3,123457,1e-05\n\
7,3,123457,1e-05\n\
7,3,123457,1e-050\n\
7,NaN,12,-0.5\n\
7,3,12,-0.5\n";
        let want = [
            "7|3|0|0.5",
            "7|3|0|0.5",
            "7|31|1|0.5",
            "7|31|1|0.5",
            "7|3|1|0.5",
            "7|∅|1|0.55",
            "7|3|123456|0.55",
            "7|3|123457|0.55",
            "7|3|123457|0.00001",
            "7|3|123457|0.00001",
            "7|3|123457|0.0",
            "7|∅|12|-0.5",
            "7|3|12|-0.5",
        ];
        for chunk in [1, 5, 64 << 10] {
            let general = decoded_rows("r.csv", csv, super::super::Format::Csv, false, chunk);
            assert_eq!(general, want, "arrow-csv in chunks of {chunk}");
            assert_eq!(decoded_rows("r.csv", csv, super::super::Format::Csv, true, chunk), want, "chunks of {chunk}");
        }
        // Numbers that change by one and keep their length: the previous row's bytes only
        // in part (across a 9, into more digits, down, negative, with a fraction, with
        // another end, with an exponent).
        let csv = "token_position,layer,l2_distance\n\
7,0,1.5\n\
8,1,1.6\n\
9,2,2.5\n\
10,3,2.6\r\n\
11,4,2.7\r\n\
12,5,2.7\n\
11,-3,-2\n\
12,-2,-1\n\
13,-1,0\n\
98,0,1\n\
99,1,2\n\
100,1,3\n\
101,1,3.\n\
102,1,4.\n\
103,1,5\n\
104,1,1e-05\n\
105,1,2e-05\n\
106,1,2e-05\n";
        let want = [
            "7|0|1.5", "8|1|1.6", "9|2|2.5", "10|3|2.6", "11|4|2.7", "12|5|2.7", "11|-3|-2.0",
            "12|-2|-1.0", "13|-1|0.0", "98|0|1.0", "99|1|2.0", "100|1|3.0", "101|1|3.0",
            "102|1|4.0", "103|1|5.0", "104|1|0.00001", "105|1|0.00002", "106|1|0.00002",
        ];
        for chunk in [1, 5, 64 << 10] {
            let general = decoded_rows("r.csv", csv, super::super::Format::Csv, false, chunk);
            assert_eq!(general, want, "arrow-csv in chunks of {chunk}");
            assert_eq!(decoded_rows("r.csv", csv, super::super::Format::Csv, true, chunk), want, "chunks of {chunk}");
        }
    }

    /// Records the one-pass path reads and those it leaves to the field splitter, mixed: a
    /// text that extends the previous one, a quoted new text after an unquoted one, empty
    /// fields, `\r\n` endings, numbers it does not take (`+1`, `1.`, `.5`, 17 digits), an
    /// extra text column. Expected values written by hand.
    #[test]
    fn csv_direct_rows_and_their_exceptions() {
        let csv = b"layer,token_position,token_masked,l2_distance,note,variant\r\n\
0,0,ab,1.5,n1,Full\r\n\
0,1,abc,-0.25,n1,Full\r\n\
0,2,\"ab\",+1,,\"Full\"\r\n\
0,3,\"ab\",1.,n2,Full\r\n\
0,4,,.5,n2,Full\r\n\
0,5,abc,12345678901234567,\"n,3\",Attn\r\n\
0,6,abc,007,n3,Attn\r\n";
        for cube in read_all("d.csv", csv) {
            let cube = cube.unwrap();
            let p = &cube.prompts[0];
            let tokens: Vec<_> = (0..7).map(|i| p.token(i)).collect();
            assert_eq!(tokens, [Some("ab"), Some("abc"), Some("ab"), Some("ab"), None, Some("abc"), Some("abc")]);
            let full = cube.variants.iter().position(|v| v == "Full").unwrap();
            let attn = cube.variants.iter().position(|v| v == "Attn").unwrap();
            let at = cube.cell(0, 0, full, 0);
            let values: Vec<_> = (0..4).map(|i| cube.value(0, at, i)).collect();
            assert_eq!(values, [Some(1.5), Some(-0.25), Some(1.0), Some(1.0)]);
            let at = cube.cell(0, 0, attn, 0);
            assert_eq!(cube.value(0, at, 5), Some(12345678901234567.0f64 as f32));
            assert_eq!(cube.value(0, at, 6), Some(7.0));
        }
    }

    /// Texts that come round in the same order are found as the successor of the previous
    /// row's text (tokens position after position, a quoted one among them; variants), and a
    /// field is not taken for the successor it only starts with: in layer 1 `Head_10` comes
    /// after `Full`, where `Head_1` came in layer 0. CSV and JSON; values hand-written.
    #[test]
    fn texts_that_come_round_are_found_after_the_previous_one() {
        let tokens = ["ab", "c", "cd", "q,1"];
        let variants = ["Full", "Head_1", "Head_10"];
        let l2 = |layer: usize, p: usize, v: usize| layer as f64 * 10.0 + p as f64 + v as f64 / 100.0;
        let mut rows = Vec::new();
        for (layer, order) in [(0, [0, 1, 2]), (1, [0, 2, 1]), (2, [0, 1, 2])] {
            for (p, token) in tokens.iter().enumerate() {
                for v in order {
                    rows.push((layer, *token, p, variants[v], l2(layer, p, v)));
                }
            }
        }
        let mut csv = String::from("layer,token_masked,token_position,variant,l2_distance\n");
        let mut json = String::from("[");
        for (i, (layer, token, p, variant, l2)) in rows.iter().enumerate() {
            let quoted = if token.contains(',') { format!("\"{token}\"") } else { token.to_string() };
            csv.push_str(&format!("{layer},{quoted},{p},{variant},{l2}\n"));
            json.push_str(&format!(
                "{}{{\"layer\":{layer},\"token_masked\":\"{token}\",\"token_position\":{p},\"variant\":\"{variant}\",\"l2_distance\":{l2}}}",
                if i > 0 { "," } else { "" }
            ));
        }
        json.push(']');
        for (name, text) in [("round.csv", csv), ("round.json", json)] {
            for cube in read_all(name, text.as_bytes()) {
                let cube = cube.unwrap();
                assert_eq!(cube.variants, variants, "{name}");
                let p = &cube.prompts[0];
                let got: Vec<_> = (0..4).map(|i| p.token(i)).collect();
                assert_eq!(got, tokens.map(Some), "{name}");
                assert_eq!(cube.duplicates, 0, "{name}");
                for layer in 0..3 {
                    for (v, variant) in variants.iter().enumerate() {
                        let at = cube.cell(0, 0, v, layer);
                        let values: Vec<_> = (0..4).map(|i| cube.value(0, at, i)).collect();
                        let want: Vec<_> = (0..4).map(|i| Some(l2(layer, i, v) as f32)).collect();
                        assert_eq!(values, want, "{name} layer {layer} variant {variant}");
                    }
                }
            }
        }
    }

    /// Everything a cube holds, through its public API (the layout of its arrays depends on
    /// how the rows were batched, which differs between the decoders).
    fn cube_contents(c: &crate::cube::Cube) -> Vec<String> {
        let mut out = vec![format!("{:?} {:?} {:?}", c.steps, c.layers, c.variants)];
        for (p, prompt) in c.prompts.iter().enumerate() {
            out.push((0..prompt.n_positions()).map(|i| format!("{:?}", prompt.token(i))).collect());
            for (m, metric) in c.metrics.iter().enumerate() {
                for s in 0..c.steps.len() {
                    for v in 0..c.variants.len() {
                        for l in 0..c.layers.len() {
                            let at = c.cell(p, s, v, l);
                            let row: Vec<_> = (0..prompt.n_positions()).map(|i| c.value(m, at, i)).collect();
                            out.push(format!("{} {s} {v} {l} {row:?}", metric.name));
                        }
                    }
                }
            }
        }
        out
    }

    /// The cube contents of file `name` holding `text`, read at 7-byte chunks with the fast
    /// decoder and with arrow-csv / arrow-json alone.
    fn read_fast_and_general(name: &str, text: &str) -> [Result<Vec<String>, String>; 2] {
        [true, false].map(|fast| {
            let b = bytes::Bytes::from(text.as_bytes().to_vec());
            let mut ingest = super::super::Ingest::new(name, b.len() as u64).with_text_chunk_bytes(7).with_text_fast_path(fast);
            super::super::drive(&mut ingest, |r| Ok(b.slice(r.start as usize..r.end as usize)), |_| true)
                .map_err(|e| e.to_string())
                .and_then(|_| ingest.finish().map_err(|e| e.to_string()))
                .map(|c| cube_contents(&c))
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None, rng_seed: proptest::test_runner::RngSeed::Fixed(0x0c57), ..Default::default() })]

        /// The fast decoder (one-pass records, the field splitter, the hand-over) reads any mix
        /// of usual and unusual CSV fields as arrow-csv alone does: the same cube, or an error
        /// in both.
        #[test]
        fn csv_fast_path_reads_as_arrow_csv(
            rows in proptest::collection::vec((0usize..12, 0usize..9, 0usize..4, proptest::bool::ANY, 0usize..12), 1..40),
        ) {
            const NUMBERS: [&str; 12] = ["1.5", "-0.25", "007", "+1", "1.", ".5", "1e2", "12345678901234567", "", "0", "-0", "\"2.5\""];
            const TOKENS: [&str; 9] = ["ab", "abc", "\"ab\"", "\"a,b\"", "\"x\"\"y\"", "", "\"\"", "\"l1\nl2\"", "é"];
            const VARIANTS: [&str; 4] = ["Full", "Attn", "\"Full\"", "Head_0"];
            let mut csv = String::from("layer,token_position,token_masked,variant,l2_distance\n");
            for (i, &(n, t, v, crlf, l)) in rows.iter().enumerate() {
                // The layer too: whole numbers as the cube's conversion makes them (the fast
                // decoder converts them itself), a row without one skipped.
                csv += &format!("{},{i},{},{},{}{}", NUMBERS[l], TOKENS[t], VARIANTS[v], NUMBERS[n], if crlf { "\r\n" } else { "\n" });
            }
            let [fast, general] = read_fast_and_general("p.csv", &csv);
            proptest::prop_assert_eq!(fast.is_ok(), general.is_ok(), "{:?} vs {:?}", fast, general);
            if let (Ok(a), Ok(b)) = (fast, general) {
                proptest::prop_assert_eq!(a, b);
            }
        }
    }

    /// The rows a [`TextDecoder`] makes of `text` pushed in chunks of `chunk` bytes (`fast`:
    /// with the fast decoder), each row its fields as text joined by `|` (`∅`: no value). The
    /// step, layer and position columns are shown as the cube's own conversion makes them
    /// whole numbers, a metric as its nearest `f32`: the fast decoder gives them so, the
    /// general decoders as Float64.
    fn decoded_rows(name: &str, text: &str, format: super::super::Format, fast: bool, chunk: usize) -> Vec<String> {
        struct Rows(Vec<String>);
        impl super::super::BatchSink for Rows {
            fn begin(&mut self, _: &SchemaRef) -> Result<(), IngestError> {
                Ok(())
            }
            fn batch(&mut self, b: RecordBatch) -> Result<(), IngestError> {
                let text: Vec<ArrayRef> = b
                    .columns()
                    .iter()
                    .zip(b.schema().fields())
                    .map(|(c, f)| {
                        let c = match f.name().as_str() {
                            "generation_step" | "layer" | "token_position" => crate::cube::numbers_as_i64(c).unwrap(),
                            "l2_distance" | "cosine_distance" => arrow_cast::cast(c, &DataType::Float32).unwrap(),
                            _ => c.clone(),
                        };
                        arrow_cast::cast(&c, &DataType::Utf8).unwrap()
                    })
                    .collect();
                for r in 0..b.num_rows() {
                    let fields: Vec<&str> = text
                        .iter()
                        .map(|c| {
                            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
                            if arrow_array::Array::is_null(c, r) { "∅" } else { c.value(r) }
                        })
                        .collect();
                    self.0.push(fields.join("|"));
                }
                Ok(())
            }
        }
        let mut d = super::super::TextDecoder::new(name, text.len() as u64, format).with_fast_path(fast);
        let mut rows = Rows(Vec::new());
        for c in text.as_bytes().chunks(chunk) {
            d.push(c, &mut rows).unwrap();
        }
        d.finish(&mut rows).unwrap();
        rows.0
    }

    /// Batches handed back to the pool give their buffers to the next batches, any column's
    /// to any column of the same value width: the values stay right (a reused buffer starts
    /// empty), the pool keeps a bounded number, and a buffer something else still holds is
    /// not taken. Number columns come out as the cube takes them: the layer and position as
    /// Int64, a metric as Float32, a writer's index column (no role) as Float64.
    #[test]
    fn recycled_batch_buffers_are_reused_and_values_stay_right() {
        let schema = Arc::new(Schema::new(
            ["index", "layer", "token_position", "variant", "l2_distance"]
                .map(|n| Field::new(n, if n == "variant" { DataType::Utf8 } else { DataType::Float64 }, true))
                .to_vec(),
        ));
        let pool = BufferPool::new();
        let mut fast = FastText::new("t.csv", Layout::Csv(b','), &schema, 4, &pool, false).unwrap();
        let mut text = String::from("index,layer,token_position,variant,l2_distance\n");
        // A layer of 2.75 is layer 2 (truncated, as the cube's conversion does).
        for r in 0..14 {
            text.push_str(&format!("{r}.25,{r}.75,{},{},{}.5\n", 2 * r, if r % 2 == 0 { "Full" } else { "Attn" }, 10 * r));
        }
        let mut rows: Vec<String> = Vec::new();
        // The data pointers of each batch's 8-byte and 4-byte buffers.
        let mut buffers: Vec<[Vec<*const u8>; 2]> = Vec::new();
        let mut kept = None;
        let mut emit = |b: RecordBatch| -> Result<(), IngestError> {
            use arrow_array::types::{Float32Type, Float64Type, Int64Type};
            let index = b.column(0).as_primitive::<Float64Type>();
            let layer = b.column(1).as_primitive::<Int64Type>();
            let position = b.column(2).as_primitive::<Int64Type>();
            let variant = b.column(3).as_dictionary::<Int32Type>();
            let names = variant.values().as_string::<i32>();
            let l2 = b.column(4).as_primitive::<Float32Type>();
            for r in 0..b.num_rows() {
                let name = names.value(variant.keys().value(r) as usize);
                rows.push(format!("{}|{}|{}|{name}|{}", index.value(r), layer.value(r), position.value(r), l2.value(r)));
            }
            let ptr = |c: usize| b.column(c).to_data().buffers()[0].as_ptr();
            buffers.push([vec![ptr(0), ptr(1), ptr(2)], vec![ptr(3), ptr(4)]]);
            if buffers.len() == 2 {
                // Held elsewhere: this batch's `l2_distance` buffer cannot be taken.
                kept = Some(b.column(4).clone());
            }
            pool.recycle(b);
            Ok(())
        };
        assert!(matches!(fast.decode(text.as_bytes(), true, &mut emit).unwrap(), Fed::Taken));
        fast.flush(&mut emit).unwrap();
        let want: Vec<String> = (0..14)
            .map(|r| format!("{r}.25|{r}|{}|{}|{}.5", 2 * r, if r % 2 == 0 { "Full" } else { "Attn" }, 10 * r))
            .collect();
        assert_eq!(rows, want);
        assert_eq!(buffers.len(), 4, "batches of 4, 4, 4 and 2 rows");
        // A batch's room is made when its first row comes, after the batch before was handed
        // over (and here recycled at once): batch 1 gets batch 0's buffers back; batch 2 gets
        // batch 1's, but for one new 4-byte buffer, as `kept` still holds batch 1's
        // `l2_distance` values; batch 3 gets batch 2's.
        let sorted = |i: usize, width: usize| {
            let mut b = buffers[i][width].clone();
            b.sort();
            b
        };
        for width in [0, 1] {
            assert_eq!(sorted(1, width), sorted(0, width), "{buffers:?}");
            assert_eq!(sorted(3, width), sorted(2, width), "{buffers:?}");
        }
        assert_eq!(sorted(2, 0), sorted(1, 0), "{buffers:?}");
        let kept = kept.unwrap().to_data().buffers()[0].as_ptr();
        assert_eq!(kept, buffers[1][1][1]);
        let earlier: Vec<*const u8> = buffers[..2].iter().flat_map(|b| b[1].clone()).collect();
        let new: Vec<_> = buffers[2][1].iter().filter(|p| !earlier.contains(p)).collect();
        assert_eq!(new.len(), 1, "{buffers:?}");
        assert!(buffers[2][1].contains(&buffers[1][1][0]), "{buffers:?}");
        // The last batch's buffers are all in the pool: none was taken once the rows ended.
        assert_eq!(pool.held(), (3, 2));
    }

    /// A text column the cube does not read (not dictionary-encoded by the fast decoder)
    /// comes out of both decoders the same, CSV and JSON, with quotes, escapes, line breaks
    /// and missing values; the values of some rows written by hand.
    #[test]
    fn free_text_columns_read_as_the_general_decoders_do() {
        let mut csv = String::from("layer,token_position,note,l2_distance\n");
        let mut json = Vec::new();
        let notes = ["plain", "\"a, \"\"quoted\"\" one\"", "", "\"two\nlines\"", "é"];
        let json_notes = ["\"plain\"", "\"a, \\\"quoted\\\" one\"", "null", "\"two\\nlines\"", "\"\\u00e9\""];
        for r in 0..200usize {
            csv += &format!("0,{r},{},{r}.5\n", notes[r % 5]);
            json.push(format!("{{\"layer\":0,\"token_position\":{r},\"note\":{},\"l2_distance\":{r}.5}}", json_notes[r % 5]));
        }
        let json = format!("[{}]", json.join(","));
        for (name, text, format) in [("n.csv", &csv, super::super::Format::Csv), ("n.json", &json, super::super::Format::Json)] {
            let want = decoded_rows(name, text, format, false, 64 << 10);
            assert_eq!(want.len(), 200, "{name}");
            assert!(want[1].contains("|a, \"quoted\" one|"), "{name}: {}", want[1]);
            assert!(want[2].contains("|∅|"), "{name}: {}", want[2]);
            assert!(want[3].contains("|two\nlines|"), "{name}: {}", want[3]);
            assert!(want[4].contains("|é|"), "{name}: {}", want[4]);
            for chunk in [64 << 10, 7] {
                assert_eq!(decoded_rows(name, text, format, true, chunk), want, "{name} in chunks of {chunk}");
            }
        }
    }

    /// A chunk larger than the schema sample is decoded in place past the sample: pushed to a
    /// [`TextDecoder`] (as the CLI pushes its segments, without being asked for the bytes),
    /// the same rows come out as from small chunks and from arrow-csv alone, also when the
    /// first data row is longer than the sample (the schema is then decided on more bytes).
    #[test]
    fn chunks_larger_than_the_schema_sample_read_as_small_ones() {
        for first_token in [3usize, 300 << 10] {
            let mut csv = String::from("generation_step,layer,token_masked,token_position,variant,l2_distance\n");
            let long = "x".repeat(first_token);
            for r in 0..20_000usize {
                let pos = r % 1000;
                let token = if pos == 0 { long.as_str() } else { ["a", "\"b,c\"", "d"][pos % 3] };
                csv += &format!("{},{},{token},{pos},{},{}.{}\n", r / 5000, r % 7, ["Full", "Attn"][r % 2], r, r % 10);
            }
            let read = |chunk: usize, fast: bool| decoded_rows("big.csv", &csv, super::super::Format::Csv, fast, chunk);
            let want = read(64 << 10, false);
            assert_eq!(want.len(), 20_000);
            assert_eq!(want[1], "0|1|b,c|1|Attn|1.1");
            assert_eq!(want[5001], "1|3|b,c|1|Attn|5001.1");
            for chunk in [8 << 20, 300 << 10, 64 << 10] {
                assert!(read(chunk, true) == want, "chunks of {chunk} bytes, first token of {first_token}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None, rng_seed: proptest::test_runner::RngSeed::Fixed(0x15a0), ..Default::default() })]

        /// The fast decoder reads JSON records (an array, or JSON Lines) with repeated,
        /// alternating, escaped and missing text and unusual numbers as arrow-json alone does:
        /// the same cube, or an error in both.
        #[test]
        fn json_fast_path_reads_as_arrow_json(
            rows in proptest::collection::vec((0usize..9, 0usize..7, 0usize..5), 1..40),
            lines in proptest::bool::ANY,
        ) {
            const NUMBERS: [&str; 9] = ["1.5", "-0.25", "7", "1e2", "12345678901234567", "null", "0", "-0", "2.50"];
            const TOKENS: [&str; 7] = ["\"ab\"", "\"abc\"", "\"a\\\"b\"", "\"\\u00e9\"", "\"\"", "null", "\"é\""];
            const VARIANTS: [&str; 5] = ["\"Full\"", "\"Attn\"", "\"Full\"", "\"Head_0\"", "\"Attn\""];
            let records: Vec<String> = rows
                .iter()
                .enumerate()
                .map(|(i, &(n, t, v))| {
                    format!(
                        "{{\"layer\":0,\"token_position\":{i},\"token_masked\":{},\"variant\":{},\"l2_distance\":{}}}",
                        TOKENS[t], VARIANTS[v], NUMBERS[n]
                    )
                })
                .collect();
            let json = if lines { records.join("\n") + "\n" } else { format!("[{}]", records.join(",")) };
            let [fast, general] = read_fast_and_general("p.json", &json);
            proptest::prop_assert_eq!(fast.is_ok(), general.is_ok(), "{:?} vs {:?}", fast, general);
            if let (Ok(a), Ok(b)) = (fast, general) {
                proptest::prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn csv_errors_after_fast_rows_name_the_file_line() {
        // Line 1 is the header; line 4 holds text in a metric; line 6 has too few fields.
        let csv = b"layer,token_position,l2_distance\n0,0,1\n0,1,2\n0,2,abc\n0,3,4\n";
        for r in read_all("e.csv", csv) {
            let e = r.unwrap_err();
            assert!(e.contains("line 4: column `l2_distance` holds `abc`"), "{e}");
        }
        let csv = b"layer,token_position,l2_distance\n0,0,1\n0,1,2\n0,2,3\n0,3,4\n0,4\n";
        for r in read_all("f.csv", csv) {
            let e = r.unwrap_err();
            assert!(e.starts_with("f.csv: "), "{e}");
            assert!(e.contains("line 6 has 2 fields, but the header has 3 columns"), "{e}");
        }
    }

    #[test]
    fn null_words_after_the_sample_are_no_value_in_number_columns() {
        // More usual rows than the schema sample (256 KiB), then `NA`, `null` and `n/a` in
        // number columns and `NA` as a token's text (plain and quoted), none of them in the
        // sample: the general decoder, not told to look for these words, refuses them.
        let mut csv = String::from("layer,token_position,token_masked,l2_distance,cosine_distance\n");
        let mut n = 0;
        while csv.len() < 300 << 10 {
            csv += &format!("0,{n},t,0.5,0.25\n");
            n += 1;
        }
        csv += &format!("0,{n},NA,NA,0.75\n");
        csv += &format!("null,{},u,1.5,1.5\n", n + 1);
        csv += &format!("0,{},\"NA\",2.5,n/a\n", n + 2);
        for chunk in [4096u64, 1 << 20] {
            let b = bytes::Bytes::from(csv.clone().into_bytes());
            let mut ingest = super::super::Ingest::new("na.csv", b.len() as u64).with_text_chunk_bytes(chunk);
            super::super::drive(&mut ingest, |r| Ok(b.slice(r.start as usize..r.end as usize)), |_| true).unwrap();
            let cube = ingest.finish().unwrap();
            let (l2, cos) = (cube.metric_index("l2_distance").unwrap(), cube.metric_index("cosine_distance").unwrap());
            let at = cube.cell(0, 0, 0, 0);
            // By hand from the rows above: the usual rows, then l2 missing, a row without a
            // layer (skipped), cosine missing.
            assert_eq!((cube.value(l2, at, n - 1), cube.value(cos, at, n - 1)), (Some(0.5), Some(0.25)));
            assert_eq!((cube.value(l2, at, n), cube.value(cos, at, n)), (None, Some(0.75)));
            assert_eq!((cube.value(l2, at, n + 1), cube.value(cos, at, n + 1)), (None, None));
            assert_eq!((cube.value(l2, at, n + 2), cube.value(cos, at, n + 2)), (Some(2.5), None));
            assert_eq!(cube.rows_read, n as u64 + 3, "chunk {chunk}");
            let p = &cube.prompts[0];
            assert_eq!((p.token(n), p.token(n + 1), p.token(n + 2)), (Some("NA"), None, Some("NA")));
        }
        let [_, general] = read_fast_and_general("na.csv", &csv);
        // (arrow-csv checks a batch column by column: the layer's `null` is found first.)
        let e = general.unwrap_err();
        assert!(e.contains("column `layer` holds `null`, which is not a number"), "{e}");
    }

    /// The previous row's text is compared in place: a value that extends it, one with escapes
    /// repeated, one ending in an escaped backslash, and keys that extend the expected one.
    #[test]
    fn json_repeated_text_compared_in_place() {
        let json = br#"[{"layer":0,"token_position":0,"variant":"ab","l2_distance":1},
{"layer":0,"token_position":1,"variant":"ab","l2_distance":2},
{"layer":0,"token_position":2,"variant":"abc","l2_distance":3},
{"layer":0,"token_position":3,"variant":"a\"b","l2_distance":4},
{"layer":0,"token_position":4,"variant":"a\"b","l2_distance":5},
{"layer":0,"token_position":5,"variant":"a\\","l2_distance":6},
{"layer":0,"token_position":6,"variant":"a\\","l2_distance":7},
{"layer":0,"token_position":7,"variant":"a","l2_distance":8}]"#;
        // Position → (variant, l2), written out by hand from the rows above.
        let expected = [("ab", 1.0), ("ab", 2.0), ("abc", 3.0), ("a\"b", 4.0), ("a\"b", 5.0), ("a\\", 6.0), ("a\\", 7.0), ("a", 8.0)];
        for cube in read_all("v.json", json) {
            let cube = cube.unwrap();
            let mut variants = cube.variants.clone();
            variants.sort();
            assert_eq!(variants, vec!["a", "a\"b", "a\\", "ab", "abc"]);
            for (position, (variant, l2)) in expected.iter().enumerate() {
                let v = cube.variant_index(variant).unwrap();
                assert_eq!(cube.value(0, cube.cell(0, 0, v, 0), position), Some(*l2 as f32), "{variant} at {position}");
                for other in 0..cube.variants.len() {
                    if other != v {
                        assert_eq!(cube.value(0, cube.cell(0, 0, other, 0), position), None, "{position}");
                    }
                }
            }
        }
        // A key that extends the expected one is another key (here unknown: the general
        // decoder reads the file and ignores it).
        let json = br#"[{"layer":0,"token_position":0,"l2_distance":1},{"layer":0,"layerx":5,"token_position":1,"l2_distance":2}]"#;
        for cube in read_all("k.json", json) {
            let cube = cube.unwrap();
            let at = cube.cell(0, 0, 0, 0);
            assert_eq!((cube.value(0, at, 0), cube.value(0, at, 1)), (Some(1.0), Some(2.0)));
        }
    }

    #[test]
    fn json_records_escapes_order_nulls_and_hand_over() {
        // Keys in another order on row 2, a missing key and null on row 3, escapes and an
        // exponent, then a metric written as text (row 4: arrow-json reads it from there on).
        let json = br#"[{"layer":0,"token_position":0,"token_masked":"a\"b\u00e9","l2_distance":1.5,"config_prompt":"p\nq"},
 {"token_position":1,"layer":0,"l2_distance":2.5e1,"token_masked":"x","config_prompt":"p\nq"},
 {"layer":0,"token_position":2,"l2_distance":null,"config_prompt":"p\nq"},
 {"layer":0,"token_position":3,"token_masked":"z","l2_distance":"0.25","config_prompt":"p\nq"},
 {"layer":0,"token_position":4,"token_masked":"w","l2_distance":-0.125,"config_prompt":"p\nq"}]"#;
        for cube in read_all("r.json", json) {
            let cube = cube.unwrap();
            let p = &cube.prompts[0];
            assert_eq!(p.token(0), Some("a\"bé"));
            assert_eq!(p.token(1), Some("x"));
            assert_eq!(p.token(2), None);
            assert_eq!(p.token(3), Some("z"));
            assert_eq!(p.text.as_deref(), Some("p\nq"));
            let at = cube.cell(0, 0, 0, 0);
            let values: Vec<_> = (0..5).map(|i| cube.value(0, at, i)).collect();
            assert_eq!(values, vec![Some(1.5), Some(25.0), None, Some(0.25), Some(-0.125)]);
        }
        // JSON Lines, the same rows without the text metric.
        let lines = b"{\"layer\":1,\"token_position\":0,\"l2_distance\":3}\n{\"layer\":1,\"token_position\":1,\"l2_distance\":4}\n";
        for cube in read_all("l.jsonl", lines) {
            let cube = cube.unwrap();
            let at = cube.cell(0, 0, 0, 0);
            assert_eq!((cube.value(0, at, 0), cube.value(0, at, 1)), (Some(3.0), Some(4.0)));
        }
    }

    #[test]
    fn json_bad_values_and_cut_files_are_errors() {
        let nested = br#"[{"layer":0,"token_position":0,"l2_distance":1},{"layer":0,"token_position":1,"l2_distance":{"a":1}}]"#;
        for r in read_all("n.json", nested) {
            let e = r.unwrap_err();
            assert!(e.starts_with("n.json: cannot read it as JSON"), "{e}");
            assert!(e.contains("`l2_distance`"), "{e}");
        }
        let cut = br#"[{"layer":0,"token_position":0,"l2_distance":1},{"layer":0,"token_posi"#;
        for r in read_all("c.json", cut) {
            assert!(r.unwrap_err().starts_with("c.json: "));
        }
    }
}
