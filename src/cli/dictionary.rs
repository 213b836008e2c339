//! Dictionary-encoded column chunks, written here rather than by arrow-rs's column writer.
//!
//! The converter knows the dictionary of every text and integer column before it writes
//! (the cube's axes and token texts), and the metric columns hold few distinct rounded
//! values; arrow-rs's writer would instead intern every row's value in a hash table (with
//! a hash of the whole text per row: most of a conversion's write time). Here a column
//! chunk is written from per-row dictionary keys:
//!
//! - the dictionary page holds only the entries used, sorted by value, and says so
//!   (`is_sorted`), which zstd compresses better; with 16-bit indices (257 to 65,536 entries)
//!   the entries are placed by use instead, so that both bytes of the common indices are small
//!   ([`interleaved_slots`]);
//! - indices are byte-aligned: those that need 1–8 bits are stored in 8, 9–16 in 16 (wider
//!   ones keep their width). arrow-rs bit-packs at the narrowest width (e.g. 11 or 13 bits),
//!   which zstd, working on bytes, compresses poorly; every data page declares its width,
//!   so readers decode any width from 0 to 32 (pyarrow, pandas, polars, DuckDB and arrow-rs
//!   are checked by `tests/cli_tool.rs`);
//! - pages are V1, zstd-compressed, with chunk statistics and a page index (column index and
//!   offset index) as arrow-rs writes them, text statistics truncated to 64 bytes.
//!
//! Metric values get their dictionary from [`FloatDictionary`], an open-addressing table on
//! the `f32` bits.

use std::cmp::Ordering;

use bytes::Bytes;
use parquet::basic::{Encoding, ZstdLevel};
use parquet::column::page::Page;
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnIndexBuilder;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::ColumnDescPtr;

use super::chunk;
use crate::cube::Rounding;

/// The key of a row without a value.
pub const NULL_KEY: u32 = u32::MAX;

/// A dictionary key as a column keeps it per row: `u8`, `u16` or `u32`, the narrowest that
/// holds the dictionary's indices, its largest value meaning "no value" (a seed-scale row
/// group holds 3.8M keys per column).
pub trait Key: Copy + PartialEq + Send {
    /// The key of a row without a value.
    const NULL: Self;
    /// Keys below this index a dictionary entry.
    const LIMIT: usize;
    /// The entry index of a key.
    fn index(self) -> usize;
    /// The key of entry `i` (below [`Self::LIMIT`]), or [`Self::NULL`].
    fn of(i: Option<u32>) -> Self;
}

macro_rules! key {
    ($t:ty) => {
        impl Key for $t {
            const NULL: $t = <$t>::MAX;
            const LIMIT: usize = <$t>::MAX as usize;
            #[inline]
            fn index(self) -> usize {
                self as usize
            }
            #[inline]
            fn of(i: Option<u32>) -> $t {
                i.map_or(<$t>::MAX, |i| i as $t)
            }
        }
    };
}
key!(u8);
key!(u16);
key!(u32);

/// Keys narrower than 32 bits (`u8`, `u16`) have all their values counted in one table of
/// this size by [`encode_chunk`].
const KEY_TABLE: usize = 1 << 16;

/// Most rows in a data page (see [`DATA_PAGE_BYTES`]).
pub const PAGE_ROWS: usize = 1 << 20;

/// A data page ends when its indices reach this size (arrow-rs's default page size), or at
/// [`PAGE_ROWS`] rows. Larger pages compress better (each page is compressed on its own).
pub const DATA_PAGE_BYTES: usize = 1 << 20;

/// Text statistics (chunk and page index) are cut to this many bytes, as arrow-rs does: a
/// prompt text can be kilobytes long.
pub const STATISTICS_BYTES: usize = 64;

/// The index width stored for a dictionary of `entries` values.
pub fn stored_width(entries: usize) -> u8 {
    let needed = usize::BITS - entries.saturating_sub(1).leading_zeros();
    match needed {
        0..=8 => 8,
        9..=16 => 16,
        w => w as u8,
    }
}

/// Read a ULEB128 integer at `*at`.
fn uleb(data: &[u8], at: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *data.get(*at).ok_or_else(|| {
            ParquetError::General("dictionary indices end inside a run header".into())
        })?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err(ParquetError::General("run header too long".into()));
        }
    }
}

fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Append one RLE run of the hybrid encoding: `rows` times `value`, stored in `value_bytes`
/// bytes (the bit width rounded up to bytes).
fn put_rle_run(out: &mut Vec<u8>, rows: u64, value: u32, value_bytes: usize) {
    put_uleb(out, rows << 1);
    out.extend_from_slice(&value.to_le_bytes()[..value_bytes]);
}

/// Append what `levels` writes after its length in bytes (4, little-endian): a V1 data page's
/// definition levels.
fn put_length_prefixed(out: &mut Vec<u8>, levels: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    levels(out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Decode `count` values of the RLE / bit-packed hybrid encoding at `width` bits.
pub fn decode_hybrid(data: &[u8], width: u8, count: usize) -> Result<Vec<u32>> {
    if width > 32 {
        return Err(ParquetError::General(format!("index width {width} > 32")));
    }
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    let w = usize::from(width);
    let value_bytes = w.div_ceil(8);
    while out.len() < count {
        let header = uleb(data, &mut at)?;
        if header & 1 == 1 {
            let groups = (header >> 1) as usize;
            let bytes = groups * w;
            let run = data.get(at..at + bytes).ok_or_else(|| {
                ParquetError::General("bit-packed run past the end of the page".into())
            })?;
            at += bytes;
            let n = (groups * 8).min(count - out.len());
            let mask = if w == 32 {
                u64::from(u32::MAX)
            } else {
                (1u64 << w) - 1
            };
            let (mut acc, mut bits, mut next) = (0u64, 0usize, 0usize);
            for _ in 0..n {
                while bits < w {
                    acc |= u64::from(run[next]) << bits;
                    next += 1;
                    bits += 8;
                }
                out.push((acc & mask) as u32);
                acc = if w == 64 { 0 } else { acc >> w };
                bits -= w;
            }
        } else {
            let run = (header >> 1) as usize;
            let bytes = data
                .get(at..at + value_bytes)
                .ok_or_else(|| ParquetError::General("RLE run past the end of the page".into()))?;
            at += value_bytes;
            let mut v = 0u32;
            for (i, b) in bytes.iter().enumerate() {
                v |= u32::from(*b) << (8 * i);
            }
            let n = run.min(count - out.len());
            out.extend(std::iter::repeat_n(v, n));
        }
    }
    Ok(out)
}

/// Most groups of 8 values in one bit-packed run (the header then fits in one byte, as
/// parquet-mr writes them).
const MAX_GROUPS: usize = 63;

/// A value of the RLE / bit-packed hybrid encoding as held before encoding: `u8` for 8-bit
/// indices and levels, `u16` for 16-bit indices, `u32` for any width. A page's indices held
/// at their stored width are a quarter or half the memory, and bit-pack as a copy of their
/// bytes.
pub trait HybridValue: Copy + PartialEq {
    /// The value as a `u32`.
    fn to_u32(self) -> u32;
    /// `v` cut to this type.
    fn from_u32(v: u32) -> Self;
}

macro_rules! hybrid_value {
    ($t:ty) => {
        impl HybridValue for $t {
            #[inline(always)]
            fn to_u32(self) -> u32 {
                u32::from(self)
            }
            #[inline(always)]
            fn from_u32(v: u32) -> $t {
                v as $t
            }
        }
    };
}
hybrid_value!(u8);
hybrid_value!(u16);
hybrid_value!(u32);

/// Encode `values` in the RLE / bit-packed hybrid encoding at `width` bits (≤ 32): runs of 8
/// or more equal values starting at a group boundary as RLE runs, the rest bit-packed.
pub fn encode_hybrid<T: HybridValue>(values: &[T], width: u8, out: &mut Vec<u8>) {
    let value_bytes = usize::from(width).div_ceil(8);
    let mut i = 0;
    // Start of the pending bit-packed values (always a whole number of groups before `i`,
    // except at the very end).
    let mut pending = 0;
    let flush = |out: &mut Vec<u8>, chunk: &[T]| {
        for run in chunk.chunks(MAX_GROUPS * 8) {
            put_uleb(out, ((run.len().div_ceil(8) as u64) << 1) | 1);
            bit_pack(run, width, out);
        }
    };
    while i < values.len() {
        let v = values[i];
        let mut run = 1;
        // Long runs (a text or integer column's) are measured 8 values at a time.
        while let Some(next) = values.get(i + run..i + run + 8) {
            if !next.iter().fold(true, |same, &x| same & (x == v)) {
                break;
            }
            run += 8;
        }
        while i + run < values.len() && values[i + run] == v {
            run += 1;
        }
        if run >= 8 {
            flush(out, &values[pending..i]);
            put_rle_run(out, run as u64, v.to_u32(), value_bytes);
            i += run;
            pending = i;
        } else {
            // Take a whole group into the bit-packed values.
            i = (i + 8).min(values.len());
        }
    }
    flush(out, &values[pending..]);
}

/// Append `values` (each below 2^`width`, `width` ≤ 32) bit-packed as the Parquet hybrid
/// encoding's bit-packed runs hold them: groups of 8, least significant bit first, the last
/// group padded with zeros.
fn bit_pack<T: HybridValue>(values: &[T], width: u8, out: &mut Vec<u8>) {
    if usize::from(width) == 8 * size_of::<T>() {
        // Each value in its own bytes, as it is held (little-endian), the last group padded.
        let start = out.len();
        out.reserve(values.len().div_ceil(8) * 8 * size_of::<T>());
        for &v in values {
            out.extend_from_slice(&v.to_u32().to_le_bytes()[..size_of::<T>()]);
        }
        out.resize(start + values.len().div_ceil(8) * 8 * size_of::<T>(), 0);
        return;
    }
    macro_rules! widths {
        ($($w:literal)*) => {
            match width {
                $($w => bit_pack_width::<$w, T>(values, out),)*
                _ => unreachable!("bit width {width} above 32"),
            }
        };
    }
    widths!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
}

/// [`bit_pack`] at a width known when compiling: the shifts of a group of 8 values (`W`
/// bytes) are constants, and the loop over the group unrolls.
fn bit_pack_width<const W: usize, T: HybridValue>(values: &[T], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + values.len().div_ceil(8) * W, 0);
    let mut groups = values.chunks_exact(8);
    let mut dst = out[start..].chunks_exact_mut(W.max(1));
    let pack = |group: &[T], dst: &mut [u8]| {
        let (mut acc, mut bits, mut at) = (0u64, 0usize, 0usize);
        for &v in group {
            acc |= u64::from(v.to_u32()) << bits;
            bits += W;
            if bits >= 32 {
                dst[at..at + 4].copy_from_slice(&(acc as u32).to_le_bytes());
                (acc, bits, at) = (acc >> 32, bits - 32, at + 4);
            }
        }
        // 8 values of W bits end on a byte boundary.
        dst[at..W].copy_from_slice(&acc.to_le_bytes()[..W - at]);
    };
    if W == 0 {
        return;
    }
    for (group, dst) in groups.by_ref().zip(dst.by_ref()) {
        pack(group, dst);
    }
    let rest = groups.remainder();
    if let Some(dst) = dst.next().filter(|_| !rest.is_empty()) {
        let mut last = [T::from_u32(0); 8];
        last[..rest.len()].copy_from_slice(rest);
        pack(&last, dst);
    }
}

/// The values a column's keys point into (one variant per Parquet physical type used).
#[derive(Debug, Clone)]
pub enum Entries<'a> {
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Text(Vec<&'a str>),
}

/// An unsigned integer that orders floats as [`f32::total_cmp`] does.
fn float_order_key(f: f32) -> u32 {
    let bits = f.to_bits();
    // Negative values: every bit but the sign flipped, so that larger magnitudes come first;
    // then the sign bit flipped, so that negatives come before positives.
    let flipped = if bits >> 31 == 1 { bits ^ 0x7fff_ffff } else { bits };
    flipped ^ 0x8000_0000
}

impl Entries<'_> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            Entries::Int32(v) => v.len(),
            Entries::Int64(v) => v.len(),
            Entries::Float(v) => v.len(),
            Entries::Text(v) => v.len(),
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Order of two entries as Parquet sorts the column (floats by value, text bytewise).
    fn cmp(&self, a: usize, b: usize) -> Ordering {
        match self {
            Entries::Int32(v) => v[a].cmp(&v[b]),
            Entries::Int64(v) => v[a].cmp(&v[b]),
            Entries::Float(v) => v[a].total_cmp(&v[b]),
            Entries::Text(v) => v[a].as_bytes().cmp(v[b].as_bytes()),
        }
    }

    /// Append entry `i` in the PLAIN encoding.
    fn put_plain(&self, i: usize, out: &mut Vec<u8>) {
        match self {
            Entries::Int32(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Entries::Int64(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Entries::Float(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Entries::Text(v) => {
                out.extend_from_slice(&(v[i].len() as u32).to_le_bytes());
                out.extend_from_slice(v[i].as_bytes());
            }
        }
    }

    /// Entry `i` as a lower bound (`upper == false`) or upper bound for statistics: the
    /// value's plain bytes (text without its length, cut to [`STATISTICS_BYTES`]), and
    /// whether that is the exact value. Floats follow the format's rule for zeros: a minimum
    /// of zero is written `-0.0`, a maximum `+0.0`.
    pub(super) fn bound(&self, i: usize, upper: bool) -> (Vec<u8>, bool) {
        match self {
            Entries::Int32(v) => (v[i].to_le_bytes().to_vec(), true),
            Entries::Int64(v) => (v[i].to_le_bytes().to_vec(), true),
            Entries::Float(v) => {
                let x = if v[i] == 0.0 {
                    if upper {
                        0.0f32
                    } else {
                        -0.0f32
                    }
                } else {
                    v[i]
                };
                (x.to_le_bytes().to_vec(), true)
            }
            Entries::Text(v) => text_bound(v[i], upper),
        }
    }

    /// Chunk statistics with `min`/`max` the entries (`None` when all rows are null).
    pub(super) fn statistics(&self, bounds: Option<(usize, usize)>, nulls: u64) -> Statistics {
        fn stats<T>(
            min: Option<T>,
            max: Option<T>,
            nulls: u64,
            backwards_compatible: bool,
        ) -> ValueStatistics<T> {
            ValueStatistics::new(min, max, None, Some(nulls), false)
                .with_backwards_compatible_min_max(backwards_compatible)
        }
        let num = |i: usize, upper: bool| self.bound(i, upper).0;
        let (lo, hi) = match bounds {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        match self {
            Entries::Int32(v) => {
                Statistics::Int32(stats(lo.map(|a| v[a]), hi.map(|b| v[b]), nulls, true))
            }
            Entries::Int64(v) => {
                Statistics::Int64(stats(lo.map(|a| v[a]), hi.map(|b| v[b]), nulls, true))
            }
            Entries::Float(_) => {
                let f = |b: Vec<u8>| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                Statistics::Float(
                    stats(
                        lo.map(|a| f(num(a, false))),
                        hi.map(|b| f(num(b, true))),
                        nulls,
                        true,
                    )
                    .with_nan_count(Some(0)),
                )
            }
            Entries::Text(_) => {
                let min = lo.map(|a| self.bound(a, false));
                let max = hi.map(|b| self.bound(b, true));
                let exact = |b: &Option<(Vec<u8>, bool)>| b.as_ref().is_none_or(|(_, e)| *e);
                let (min_exact, max_exact) = (exact(&min), exact(&max));
                Statistics::ByteArray(
                    stats(
                        min.map(|(b, _)| ByteArray::from(b)),
                        max.map(|(b, _)| ByteArray::from(b)),
                        nulls,
                        false,
                    )
                    .with_min_is_exact(min_exact)
                    .with_max_is_exact(max_exact),
                )
            }
        }
    }
}

/// A text statistic cut to [`STATISTICS_BYTES`]: a lower bound is a prefix; an upper bound a
/// prefix with its last character incremented. The text itself when it is short enough or
/// cannot be cut into a bound (returned with `true`: exact).
fn text_bound(text: &str, upper: bool) -> (Vec<u8>, bool) {
    if text.len() <= STATISTICS_BYTES {
        return (text.as_bytes().to_vec(), true);
    }
    let cut = (1..=STATISTICS_BYTES)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let prefix = &text[..cut];
    if !upper {
        return (prefix.as_bytes().to_vec(), false);
    }
    // Increment the last character that can be (without changing its UTF-8 length).
    for (at, c) in prefix.char_indices().rev() {
        if let Some(next) = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8()) {
            let mut out = prefix.as_bytes()[..at].to_vec();
            let mut buf = [0u8; 4];
            out.extend_from_slice(next.encode_utf8(&mut buf).as_bytes());
            return (out, false);
        }
    }
    (text.as_bytes().to_vec(), true)
}

/// The distinct values of a metric column and each row's key into them, built with an
/// open-addressing hash table on the `f32` bits (NaN: no value, [`NULL_KEY`]). Values are
/// added batch by batch as they arrive ([`push`](Self::push)), each rounded on the way in;
/// the table is keyed by the values as they come, so a value seen before is not rounded again
/// (rounding, through `f64` with a division, cost more than the lookup).
pub struct FloatDictionary {
    /// Distinct values (rounded), in order of first appearance.
    pub values: Vec<f32>,
    /// Per row: index into `values`, or [`NULL_KEY`].
    pub keys: Vec<u32>,
    /// Slots of the table: `bits << 32 | index`, or [`EMPTY_SLOT`]: the value of those bits
    /// rounds to `values[index]`. Every entry of `values` is in it under its own bits.
    slots: Vec<u64>,
    /// Slots in use.
    used: usize,
    /// The slot of bits `b` starts the search at `(b * K) >> shift`.
    shift: u32,
    max_entries: usize,
    /// With [`push_rounded`](Self::push_rounded): per number of units of the rounding below
    /// [`DIRECT_UNITS`], its entry's key + 1 (0: none yet).
    direct: Vec<u32>,
}

const EMPTY_SLOT: u64 = u64::MAX;

/// Rounded values of fewer units than this (26.2144 at 4 decimals, where most of a metric's
/// values lie) find their key in [`FloatDictionary::direct`], 1 MiB, rather than in the hash
/// table: a noisy metric's table (the seed-scale `l2_distance`'s: 258k entries, 4 MiB of
/// slots) missed the caches on most rows.
const DIRECT_UNITS: usize = 1 << 18;

/// How many rows ahead a random lookup into a large table ([`FloatDictionary::push`]'s slots,
/// [`encode_chunk`]'s ranks) is prefetched: about one memory latency of lookups.
const PREFETCH_AHEAD: usize = 16;

/// Dictionaries with more entries than this have their ranks prefetched in [`encode_chunk`]
/// (256 KiB of ranks: beyond the fast caches); smaller ones stay cached.
const PREFETCH_RANKS_ABOVE: usize = 1 << 16;

/// A hint to bring `item` into the cache (a no-op where no prefetch instruction is wired up).
#[inline(always)]
pub(crate) fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching has no effect on memory; the pointer comes from a reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

impl FloatDictionary {
    /// An empty dictionary that holds at most `max_entries` distinct values.
    pub fn new(max_entries: usize) -> FloatDictionary {
        FloatDictionary {
            values: Vec::new(),
            keys: Vec::new(),
            slots: vec![EMPTY_SLOT; 1 << 12],
            used: 0,
            shift: 32 - 12,
            max_entries,
            direct: Vec::new(),
        }
    }

    /// The dictionary of `values` (not rounded); `None` when it would hold more than
    /// `max_entries`.
    pub fn build(values: &[f32], max_entries: usize) -> Option<FloatDictionary> {
        let mut d = FloatDictionary::new(max_entries);
        d.push(values, |v| v).then_some(d)
    }

    fn slot_of(bits: u32, shift: u32) -> usize {
        (bits.wrapping_mul(0x9E37_79B1) >> shift) as usize
    }

    /// The key the value of `bits` has, if it was seen.
    #[inline(always)]
    fn find(&self, bits: u32) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = Self::slot_of(bits, self.shift);
        loop {
            let s = self.slots[i];
            if s == EMPTY_SLOT {
                return None;
            }
            if (s >> 32) as u32 == bits {
                return Some(s as u32);
            }
            i = (i + 1) & mask;
        }
    }

    /// Enter the value of `bits` (not in the table) with `key`.
    fn insert(&mut self, bits: u32, key: u32) {
        let mask = self.slots.len() - 1;
        let mut i = Self::slot_of(bits, self.shift);
        while self.slots[i] != EMPTY_SLOT {
            i = (i + 1) & mask;
        }
        self.slots[i] = (u64::from(bits) << 32) | u64::from(key);
        self.used += 1;
        if self.used * 2 > self.slots.len() {
            self.grow();
        }
    }

    /// Add the next rows, each value rounded by `round` (which must give a rounded value back
    /// unchanged). Returns false when the dictionary would exceed its size (it is then left
    /// incomplete: use plain values).
    pub fn push(&mut self, values: &[f32], round: impl Fn(f32) -> f32) -> bool {
        self.keys.reserve(values.len());
        for (n, &v) in values.iter().enumerate() {
            // A large table (a noisy metric's: millions of slots) misses the caches on most
            // probes: ask for a later value's slot ahead of time.
            if let Some(ahead) = values.get(n + PREFETCH_AHEAD) {
                prefetch(&self.slots[Self::slot_of(ahead.to_bits(), self.shift)]);
            }
            let Some(key) = self.key_of(v, &round) else {
                return false;
            };
            self.keys.push(key);
        }
        true
    }

    /// [`push`](Self::push) rounding with `rounding`: the key of a value of fewer than
    /// [`DIRECT_UNITS`] units is found by its units, without hashing. Values, keys and their
    /// order come out as `push` gives them: values of the same units are the values that
    /// round to the same value, and none outside the direct table rounds to one inside it.
    pub fn push_rounded(&mut self, values: &[f32], rounding: Rounding) -> bool {
        self.keys.reserve(values.len());
        if self.direct.is_empty() {
            self.direct = vec![0; DIRECT_UNITS];
        }
        let round = |v: f32| rounding.to_f32(f64::from(v));
        for &v in values {
            let units = rounding.units(f64::from(v)).and_then(|m| usize::try_from(m).ok());
            let key = match units.filter(|&m| m < DIRECT_UNITS) {
                Some(m) => match self.direct[m] {
                    0 => {
                        let Some(key) = self.new_entry(rounding.of_units(m as i64)) else {
                            return false;
                        };
                        self.direct[m] = key + 1;
                        key
                    }
                    k => k - 1,
                },
                None => match self.key_of(v, &round) {
                    Some(key) => key,
                    None => return false,
                },
            };
            self.keys.push(key);
        }
        true
    }

    /// The key of `v` ([`NULL_KEY`] for NaN) by the hash table, a new entry when its rounded
    /// value is new; `None` when that would exceed the dictionary's size.
    #[inline(always)]
    fn key_of(&mut self, v: f32, round: &impl Fn(f32) -> f32) -> Option<u32> {
        if v.is_nan() {
            return Some(NULL_KEY);
        }
        let bits = v.to_bits();
        if let Some(key) = self.find(bits) {
            return Some(key);
        }
        // A new value: its rounded value may be known (under its own bits).
        let r = round(v);
        let rounded = r.to_bits();
        let known = if rounded == bits { None } else { self.find(rounded) };
        let key = match known {
            Some(key) => key,
            None => {
                let key = self.new_entry(r)?;
                self.insert(rounded, key);
                key
            }
        };
        if rounded != bits {
            self.insert(bits, key);
        }
        Some(key)
    }

    /// The key of a new entry `r`; `None` when the dictionary is full.
    fn new_entry(&mut self, r: f32) -> Option<u32> {
        if self.values.len() >= self.max_entries {
            return None;
        }
        let key = self.values.len() as u32;
        self.values.push(r);
        Some(key)
    }

    /// Double the table.
    fn grow(&mut self) {
        self.shift -= 1;
        let bigger = vec![EMPTY_SLOT; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|&s| s != EMPTY_SLOT) {
            let mut j = Self::slot_of((s >> 32) as u32, self.shift);
            while self.slots[j] != EMPTY_SLOT {
                j = (j + 1) & mask;
            }
            self.slots[j] = s;
        }
    }
}

/// zstd contexts between uses: a new context allocates its tables and clears them, a context
/// used again keeps them (a new one per page, `zstd::bulk::compress`, made 5% of the convert's
/// page faults; a new one per chunk and per layout trial still made 10% of them).
static ZSTD_CONTEXTS: std::sync::Mutex<Vec<zstd::bulk::Compressor<'static>>> = std::sync::Mutex::new(Vec::new());

/// A zstd context taken from [`ZSTD_CONTEXTS`] (a new one when none is free), given back when
/// dropped.
pub(super) struct Zstd(Option<zstd::bulk::Compressor<'static>>);

impl Zstd {
    /// Contexts kept at most (a few per core: the column workers and their compressing threads).
    const KEPT: usize = 16;

    pub(super) fn take() -> Result<Zstd> {
        let kept = ZSTD_CONTEXTS.lock().ok().and_then(|mut c| c.pop());
        match kept {
            Some(z) => Ok(Zstd(Some(z))),
            None => zstd::bulk::Compressor::new(1).map(|z| Zstd(Some(z))).map_err(Self::error),
        }
    }

    fn error(e: std::io::Error) -> ParquetError {
        ParquetError::External(Box::new(e))
    }

    /// `data` as one zstd frame at `level`.
    pub(super) fn compress(&mut self, data: &[u8], level: i32) -> Result<Bytes> {
        let z = self.0.as_mut().expect("a context until dropped");
        z.set_compression_level(level).map_err(Self::error)?;
        z.compress(data).map(Bytes::from).map_err(Self::error)
    }
}

impl Drop for Zstd {
    fn drop(&mut self) {
        if let (Some(z), Ok(mut kept)) = (self.0.take(), ZSTD_CONTEXTS.lock()) {
            if kept.len() < Self::KEPT {
                kept.push(z);
            }
        }
    }
}

thread_local! {
    /// The threads [`compress_all`] may use on this thread (`0`: one per core). The column
    /// workers of `convert::encode_group` say 1 while other columns wait for a worker, whose
    /// cores are then busy.
    static COMPRESS_THREADS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Run `f` with [`compress_all`] on this thread using at most `threads` threads (`0`: one per
/// core).
pub fn with_compress_threads<T>(threads: usize, f: impl FnOnce() -> T) -> T {
    let before = COMPRESS_THREADS.replace(threads);
    let out = f();
    COMPRESS_THREADS.set(before);
    out
}

/// The threads a chunk's pages may be compressed on from this thread: the cores, or fewer
/// where [`with_compress_threads`] says so.
fn compress_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match COMPRESS_THREADS.get() {
        0 => cores,
        n => n.min(cores),
    }
}

/// Pages of fewer bytes than this (all of a chunk's together) are compressed on the calling
/// thread: threads of their own cost more than they save (the small columns' pages, and the
/// layout trials' samples, whose threads went mostly to starting and stopping them).
const PARALLEL_COMPRESS_BYTES: usize = 256 << 10;

/// What a slower zstd level must save over level 1, on a chunk's first data page, to be used
/// for the chunk: keys that look random (a noisy metric's) gain well under this from the
/// slower search and cost several times the time; smooth ones (a cosine column's) gain 5-8%.
const LEVEL_GAIN: f64 = 0.01;

/// What level 1 must save on a chunk's first data page (see [`LEVEL_TRIAL_BYTES`]) for the
/// data pages to be compressed at all: below it they are written at [`STORE_LEVEL`]. The
/// seed-scale l2 column's 18-bit keys (257,279 distinct values): level 1 saves 1.1% (8.54 MB →
/// 8.45 MB) in 9.4 ms, as much CPU time as all the column's other pages.
const STORE_GAIN: f64 = 0.02;

/// The zstd level of data pages that level 1 barely shrinks: zstd's fastest, which finds such
/// blocks incompressible and stores them (the l2 keys above: 2.4 ms).
const STORE_LEVEL: i32 = -1;

/// The highest level for the dictionary page of a chunk whose data pages a slower level does
/// not shrink (a noisy metric's, up to 1 MB of sorted values): the seed-scale l2 column's
/// 1.03 MB dictionary page is 810 KB at level 3 in 1.8 ms and 811 KB at level 7 in 6.7 ms
/// (855 KB at level 1).
const NOISY_DICTIONARY_LEVEL: i32 = 3;

/// How much of a chunk's first data page [`compress_all`] compresses at both levels to choose
/// one: on result files the gain of the slower level on the first 256 KiB is that on the whole
/// page within a point or two (the real fixture's metrics: 3.7-17% on both), and trying both
/// levels on whole pages of 1 MiB took 4% of the seed-scale convert's CPU time.
const LEVEL_TRIAL_BYTES: usize = 256 << 10;

/// The levels of a chunk's data pages and of its dictionary page, at `asked` (above 1), when
/// the start of the first data page (`trial` bytes) compresses to `slow` bytes at `asked` and to
/// `fast` at level 1 (see [`compress_all`]).
fn judged_levels(asked: i32, trial: usize, slow: usize, fast: usize) -> (i32, i32) {
    if (slow as f64) < (1.0 - LEVEL_GAIN) * fast as f64 {
        return (asked, asked);
    }
    // Keys that look random: even level 1 may gain next to nothing.
    let stored = (fast as f64) > (1.0 - STORE_GAIN) * trial as f64;
    (if stored { STORE_LEVEL } else { 1 }, asked.min(NOISY_DICTIONARY_LEVEL))
}

/// The levels (of the data pages, of the dictionary page) of a chunk of `data_pages` data
/// pages at `asked`, judged on the start of the first data page `first` when there are two or
/// more (see [`compress_all`]); with `first` compressed at its level when that start was all
/// of it.
fn judge_levels(z: &mut Zstd, first: &[u8], asked: i32, data_pages: usize) -> Result<((i32, i32), Option<Bytes>)> {
    if asked <= 1 || data_pages < 2 {
        return Ok(((asked, asked), None));
    }
    let whole = first.len() <= LEVEL_TRIAL_BYTES;
    let trial = &first[..first.len().min(LEVEL_TRIAL_BYTES)];
    let slow = z.compress(trial, asked)?;
    let fast = z.compress(trial, 1)?;
    let levels = judged_levels(asked, trial.len(), slow.len(), fast.len());
    Ok((levels, whole.then_some(if levels.0 == asked { slow } else { fast })))
}

/// A chunk's pages (the dictionary page first), compressed as [`compress_all`] compresses
/// them. Where this thread alone compresses them ([`with_compress_threads`] 1: a column worker
/// while other columns wait for one, as the seed-scale metrics' workers do), each data page
/// is compressed as it comes and its uncompressed bytes dropped, rather than all of them held
/// to the chunk's end (the seed-scale `l2_distance` column's 9.6 MB, fresh memory: page faults
/// of its critical write); the dictionary page waits for the first data page, which sets the
/// levels. Elsewhere the pages are held and compressed side by side at the end.
pub(super) struct PageCompressor {
    level: ZstdLevel,
    /// Data pages the chunk will have (the levels are judged on the first of two or more).
    data_pages: usize,
    /// This thread's context, where pages are compressed as they come.
    z: Option<Zstd>,
    /// Uncompressed pages not compressed yet.
    held: Vec<Vec<u8>>,
    /// (data pages, dictionary page), once judged.
    levels: Option<(i32, i32)>,
    compressed: Vec<Bytes>,
    /// Each page's uncompressed size, in order.
    plain_lens: Vec<usize>,
}

impl PageCompressor {
    pub(super) fn new(level: ZstdLevel, data_pages: usize) -> Result<PageCompressor> {
        let alone = compress_threads() == 1;
        Ok(PageCompressor {
            level,
            data_pages,
            z: alone.then(Zstd::take).transpose()?,
            held: Vec::new(),
            levels: None,
            compressed: Vec::new(),
            plain_lens: Vec::new(),
        })
    }

    /// The next page, uncompressed (the dictionary page first).
    pub(super) fn push(&mut self, page: Vec<u8>) -> Result<()> {
        self.plain_lens.push(page.len());
        let Some(z) = self.z.as_mut().filter(|_| self.plain_lens.len() > 1) else {
            self.held.push(page);
            return Ok(());
        };
        match self.levels {
            Some((level, _)) => self.compressed.push(z.compress(&page, level)?),
            None => {
                let asked = self.level.compression_level();
                let ((level, dictionary_level), first) = judge_levels(z, &page, asked, self.data_pages)?;
                for dictionary in self.held.drain(..) {
                    self.compressed.push(z.compress(&dictionary, dictionary_level)?);
                }
                self.compressed.push(match first {
                    Some(bytes) => bytes,
                    None => z.compress(&page, level)?,
                });
                self.levels = Some((level, dictionary_level));
            }
        }
        Ok(())
    }

    /// The pages compressed, and each page's uncompressed size.
    pub(super) fn finish(mut self) -> Result<(Vec<Bytes>, Vec<usize>)> {
        debug_assert_eq!(self.plain_lens.len(), self.data_pages + 1, "pages pushed");
        let compressed = match self.z.as_mut() {
            None => compress_all(&self.held, self.level)?,
            Some(z) => {
                // A dictionary page without data pages.
                for dictionary in self.held.drain(..) {
                    self.compressed.push(z.compress(&dictionary, self.level.compression_level())?);
                }
                self.compressed
            }
        };
        Ok((compressed, self.plain_lens))
    }
}

/// The pages of a chunk (the dictionary page first) compressed with zstd at `level`, side by
/// side on the machine's cores (or as many threads as [`with_compress_threads`] allows). When
/// `level` saves less than [`LEVEL_GAIN`] over level 1 on the start of the first data page
/// ([`LEVEL_TRIAL_BYTES`]), the data pages use level 1, or [`STORE_LEVEL`] when level 1 saves
/// less than [`STORE_GAIN`] there, and the dictionary page at most
/// [`NOISY_DICTIONARY_LEVEL`]; otherwise every page uses `level`. A large dictionary page (a
/// noisy metric's sorted values, whose keys gain nothing) is 5% smaller at level 3 than at
/// level 1, for the time of one page.
fn compress_all(pages: &[Vec<u8>], level: ZstdLevel) -> Result<Vec<Bytes>> {
    let mut z = Zstd::take()?;
    let asked = level.compression_level();
    // The level is judged on the start of page 1 (the first data page).
    let ((level, dictionary_level), first_data) = match pages.get(1) {
        Some(first) => judge_levels(&mut z, first, asked, pages.len() - 1)?,
        None => ((asked, asked), None),
    };
    let todo: Vec<usize> = (0..pages.len())
        .filter(|&i| !(i == 1 && first_data.is_some()))
        .collect();
    let level_of = |i: usize| if i == 0 { dictionary_level } else { level };
    let mut out: Vec<Option<Bytes>> = vec![None; pages.len()];
    if let Some(b) = first_data {
        out[1] = Some(b);
    }
    let threads = compress_threads().min(todo.len());
    let bytes: usize = todo.iter().map(|&i| pages[i].len()).sum();
    if threads <= 1 || bytes < PARALLEL_COMPRESS_BYTES {
        for &i in &todo {
            out[i] = Some(z.compress(&pages[i], level_of(i))?);
        }
        return Ok(out.into_iter().flatten().collect());
    }
    // The pages to do are dealt to the threads in turn; this thread's context goes to the
    // first.
    let mut first = Some(z);
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let todo = &todo;
                let z = first.take();
                scope.spawn(move || -> Result<Vec<(usize, Bytes)>> {
                    let mut z = match z {
                        Some(z) => z,
                        None => Zstd::take()?,
                    };
                    todo.iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|&i| Ok((i, z.compress(&pages[i], level_of(i))?)))
                        .collect()
                })
            })
            .collect();
        for handle in handles {
            let done = handle
                .join()
                .map_err(|_| ParquetError::General("a compression thread panicked".into()))??;
            for (i, b) in done {
                out[i] = Some(b);
            }
        }
        Ok(())
    })?;
    Ok(out.into_iter().flatten().collect())
}

/// The dictionary slot of each entry of a chunk with 16-bit indices, by the entry's rank in
/// value order, given the rows that use each (`counts`): the entries ordered by use (most used
/// first, then by value), the `f`-th at the slot whose low byte holds the even bits of `f` and
/// whose high byte its odd bits ([`interleave`]).
///
/// zstd codes the literal bytes of a page with one Huffman table, the low and high bytes of its
/// indices alike. In value order, a metric's common values are spread over every low byte,
/// which then looks random, and the high bytes follow another distribution: the mixed stream
/// codes poorly, and only a slow level's matches win some of it back. Here the common values
/// have small low and small high bytes both, so the two bytes share one skewed distribution:
/// the seed-scale cosine column (6,229 values) is 8% smaller at level 1 than it was at level 7,
/// in a tenth of the time. The slots fit 16 bits (`f` < 2^16); their page holds up to 4 times
/// as many slots as entries (the unused ones repeat an entry).
fn interleaved_slots(counts: &[u64]) -> Vec<u32> {
    let mut by_use: Vec<u32> = (0..counts.len() as u32).collect();
    by_use.sort_unstable_by_key(|&r| (std::cmp::Reverse(counts[r as usize]), r));
    let mut slots = vec![0u32; counts.len()];
    for (f, &r) in by_use.iter().enumerate() {
        slots[r as usize] = interleave(f as u32);
    }
    slots
}

/// The low 16 bits of `f` with its even bits moved to the low byte and its odd bits to the
/// high byte (bit `2j` to bit `j`, bit `2j + 1` to bit `8 + j`).
fn interleave(f: u32) -> u32 {
    (0..16).fold(0, |out, bit| out | ((f >> bit) & 1) << ((bit % 2) * 8 + bit / 2))
}

/// How [`encode_chunk`] cuts a chunk's keys into data pages.
struct DataPages<'a> {
    page_rows: usize,
    width: u8,
    /// Whether any key is [`NULL_KEY`].
    nulls: bool,
    nullable: bool,
    /// Keys narrower than 32 bits: `rank` covers every key value ([`KEY_TABLE`]).
    narrow: bool,
    /// Each key's rank among the used entries in value order.
    rank: &'a [u32],
    /// Each rank's slot in the dictionary page, when not the rank itself.
    slots: Option<&'a [u32]>,
}

impl DataPages<'_> {
    /// Hand `add_page` each data page, uncompressed (definition levels then indices), with
    /// the lowest and highest rank of its values (`None`: none) and its rows without a value.
    /// Indices are held as `I` (the stored width's own type where there is one).
    fn encode<K: Key, I: HybridValue>(
        &self,
        keys: &[K],
        add_page: &mut impl FnMut(Vec<u8>, Option<(u32, u32)>, i64),
    ) {
        let rank = self.rank;
        // A large dictionary's ranks (a noisy metric's: megabytes) miss the caches: the rank of
        // the key [`PREFETCH_AHEAD`] rows on is brought in while this row's is looked up.
        let prefetch_ranks = rank.len() > PREFETCH_RANKS_ABOVE && !self.narrow;
        let prefetch_ahead = |page: &[K], j: usize| {
            if let Some(&ahead) = page.get(j + PREFETCH_AHEAD) {
                if ahead != K::NULL {
                    prefetch(&rank[ahead.index()]);
                }
            }
        };
        let stored = |r: u32| I::from_u32(self.slots.map_or(r, |s| s[r as usize]));
        let mut indices: Vec<I> = Vec::with_capacity(self.page_rows);
        let mut levels: Vec<u8> = Vec::new();
        for page in keys.chunks(self.page_rows) {
            indices.clear();
            levels.clear();
            let (mut lo, mut hi, mut page_nulls) = (u32::MAX, 0u32, 0i64);
            if !self.nulls && self.slots.is_none() {
                // Every row has a value and the ranks are the indices (the common case): the
                // indices, then their range.
                if prefetch_ranks {
                    for (j, &k) in page.iter().enumerate() {
                        prefetch_ahead(page, j);
                        indices.push(I::from_u32(rank[k.index()]));
                    }
                } else if self.narrow {
                    let rank: &[u32; KEY_TABLE] = rank.try_into().expect("table size");
                    indices.extend(page.iter().map(|&k| I::from_u32(rank[k.index() % KEY_TABLE])));
                } else {
                    indices.extend(page.iter().map(|&k| I::from_u32(rank[k.index()])));
                }
                (lo, hi) = indices.iter().fold((lo, hi), |(lo, hi), &r| {
                    (lo.min(r.to_u32()), hi.max(r.to_u32()))
                });
            } else {
                for (j, &k) in page.iter().enumerate() {
                    if prefetch_ranks {
                        prefetch_ahead(page, j);
                    }
                    if k == K::NULL {
                        levels.resize(j, 1);
                        levels.push(0);
                        page_nulls += 1;
                    } else {
                        let r = rank[k.index()];
                        indices.push(stored(r));
                        lo = lo.min(r);
                        hi = hi.max(r);
                    }
                }
            }
            let mut buf = Vec::with_capacity(page.len() * size_of::<I>() + 64);
            if self.nullable {
                // V1 pages: definition levels (RLE, width 1) after their length in bytes.
                put_length_prefixed(&mut buf, |buf| {
                    if page_nulls == 0 && page.len() >= 8 {
                        // One run of 1s, as `encode_hybrid` writes it.
                        put_rle_run(buf, page.len() as u64, 1, 1);
                    } else {
                        levels.resize(page.len(), 1);
                        encode_hybrid(&levels, 1, buf);
                    }
                });
            }
            buf.push(self.width);
            encode_hybrid(&indices, self.width, &mut buf);
            add_page(buf, (!indices.is_empty()).then_some((lo, hi)), page_nulls);
        }
    }

    /// [`Self::encode`] for runs of one key (`(key, rows)`, [`NULL_KEY`]: no value): each
    /// page's definition levels and indices written as RLE runs, one per run (the hybrid
    /// encoding lets an RLE run have any length; a run across a page end is cut there).
    fn encode_runs(&self, runs: &[(u32, u32)], add_page: &mut impl FnMut(Vec<u8>, Option<(u32, u32)>, i64)) {
        let value_bytes = usize::from(self.width).div_ceil(8);
        let mut runs = runs.iter().copied().filter(|&(_, n)| n > 0);
        // What is left of a run that the last page cut.
        let mut rest: Option<(u32, u32)> = None;
        while let Some(first) = rest.take().or_else(|| runs.next()) {
            // One page: its runs (key, rows), at most `page_rows` rows.
            let mut page: Vec<(u32, u32)> = Vec::new();
            let mut room = self.page_rows;
            let mut next = Some(first);
            while let Some((k, n)) = next {
                let take = (n as usize).min(room) as u32;
                match page.last_mut() {
                    Some((last, m)) if *last == k => *m += take,
                    _ => page.push((k, take)),
                }
                room -= take as usize;
                if take < n {
                    rest = Some((k, n - take));
                    break;
                }
                next = if room > 0 { runs.next() } else { None };
            }
            let (mut lo, mut hi, mut page_nulls) = (u32::MAX, 0u32, 0i64);
            let mut buf = Vec::new();
            if self.nullable {
                let mut levels: Vec<(u32, u32)> = Vec::new();
                for &(k, n) in &page {
                    let level = u32::from(k != NULL_KEY);
                    match levels.last_mut() {
                        Some((l, m)) if *l == level => *m += n,
                        _ => levels.push((level, n)),
                    }
                }
                put_length_prefixed(&mut buf, |buf| {
                    for (level, n) in levels {
                        put_rle_run(buf, u64::from(n), level, 1);
                    }
                });
            }
            buf.push(self.width);
            // Indices of the rows with a value: adjacent runs around a null run may hold the
            // same index, and stay two RLE runs (valid, and rare).
            for &(k, n) in &page {
                if k == NULL_KEY {
                    page_nulls += i64::from(n);
                    continue;
                }
                let r = self.rank[k as usize];
                lo = lo.min(r);
                hi = hi.max(r);
                let stored = self.slots.map_or(r, |s| s[r as usize]);
                put_rle_run(&mut buf, u64::from(n), stored, value_bytes);
            }
            add_page(buf, (lo <= hi).then_some((lo, hi)), page_nulls);
        }
    }
}

/// Write one column chunk: `keys` (one per row, [`NULL_KEY`] for no value) into `entries`,
/// dictionary-encoded as the module docs say, zstd at `level`. Text and integer dictionaries
/// keep only the entries some key uses; a float dictionary (a metric's, built from its values)
/// is written whole. Returns the chunk's bytes (offsets from 0) and what
/// [`SerializedRowGroupWriter::append_column`] needs.
///
/// [`SerializedRowGroupWriter::append_column`]: parquet::file::writer::SerializedRowGroupWriter::append_column
pub fn encode_chunk<K: Key>(
    descr: &ColumnDescPtr,
    entries: &Entries<'_>,
    keys: &[K],
    level: ZstdLevel,
) -> Result<(super::chunk::Chunk, ColumnCloseResult)> {
    encode_keys(descr, entries, Keys::Rows(keys), level)
}

/// [`encode_chunk`] from runs of one key (`(key, rows)`, [`NULL_KEY`] for no value): a column
/// that holds one value for many rows in a row (a step, a layer, a variant) is counted and
/// written run by run, each run an RLE run of its page, never row by row. Text and integer
/// dictionaries only.
pub fn encode_chunk_runs(
    descr: &ColumnDescPtr,
    entries: &Entries<'_>,
    runs: &[(u32, u32)],
    level: ZstdLevel,
) -> Result<(super::chunk::Chunk, ColumnCloseResult)> {
    if matches!(entries, Entries::Float(_)) {
        return Err(ParquetError::General(format!("{}: a float dictionary from runs", descr.name())));
    }
    encode_keys(descr, entries, Keys::<u32>::Runs(runs), level)
}

/// A chunk's keys: one per row, or runs.
#[derive(Clone, Copy)]
enum Keys<'a, K> {
    Rows(&'a [K]),
    Runs(&'a [(u32, u32)]),
}

impl<K: Key> Keys<'_, K> {
    fn rows(&self) -> usize {
        match self {
            Keys::Rows(keys) => keys.len(),
            Keys::Runs(runs) => runs.iter().map(|&(_, n)| n as usize).sum(),
        }
    }

    /// Each key with its number of rows, in order (`K::NULL`: no value).
    #[inline(always)]
    fn each(&self, mut f: impl FnMut(K, u64)) {
        match self {
            Keys::Rows(keys) => keys.iter().for_each(|&k| f(k, 1)),
            Keys::Runs(runs) => runs.iter().for_each(|&(k, n)| {
                f(if k == NULL_KEY { K::NULL } else { K::of(Some(k)) }, u64::from(n))
            }),
        }
    }
}

fn encode_keys<K: Key>(
    descr: &ColumnDescPtr,
    entries: &Entries<'_>,
    keys: Keys<'_, K>,
    level: ZstdLevel,
) -> Result<(super::chunk::Chunk, ColumnCloseResult)> {
    let n = entries.len();
    let outside = |k: usize| {
        ParquetError::General(format!("{}: key {k} outside the dictionary", descr.name()))
    };
    // Narrow keys (u8, u16) index tables of all [`KEY_TABLE`] key values without a bounds
    // check per row.
    let narrow = K::LIMIT < KEY_TABLE;
    let mut used = vec![false; n];
    let mut nulls = 0u64;
    // Rows per entry (by index), when counted with the checks below.
    let mut entry_rows: Option<Vec<u64>> = None;
    if narrow {
        // Narrow keys mark a table of every key value (no bounds check per row), which then
        // gives the entries used, whether there are nulls, and keys outside the dictionary.
        let mut table = vec![false; KEY_TABLE];
        let seen: &mut [bool; KEY_TABLE] = table.as_mut_slice().try_into().expect("table size");
        keys.each(|k, _| seen[k.index() % KEY_TABLE] = true);
        for (i, &s) in seen.iter().enumerate().filter(|(_, &s)| s) {
            match used.get_mut(i) {
                Some(u) => *u = s,
                None if i == K::NULL.index() => keys.each(|k, rows| {
                    if k == K::NULL {
                        nulls += rows;
                    }
                }),
                None => return Err(outside(i)),
            }
        }
    } else if let (Entries::Float(_), Keys::Rows(keys)) = (entries, keys) {
        // A metric's dictionary holds the values of its rows only: every entry is used. The
        // keys are checked as a whole (the count of nulls, the largest key). With 16-bit
        // indices (known now: every entry is used), each entry's rows are counted on the way.
        used.fill(true);
        let mut largest = 0;
        let mut counts = (stored_width(n) == 16).then(|| vec![0u64; n + 1]);
        for &k in keys {
            let null = k == K::NULL;
            nulls += u64::from(null);
            largest = largest.max(if null { 0 } else { k.index() + 1 });
            if let Some(counts) = &mut counts {
                // A key past the dictionary is counted at `n` (and reported below).
                counts[if null { n } else { k.index().min(n) }] += 1;
            }
        }
        entry_rows = counts.map(|mut c| {
            c.truncate(n);
            c
        });
        if largest > n {
            return Err(outside(largest - 1));
        }
    } else {
        let mut outside_key = None;
        keys.each(|k, rows| {
            if k == K::NULL {
                nulls += rows;
            } else {
                match used.get_mut(k.index()) {
                    Some(u) => *u = true,
                    None => {
                        outside_key.get_or_insert(k.index());
                    }
                }
            }
        });
        if let Some(k) = outside_key {
            return Err(outside(k));
        }
    }
    let nullable = descr.max_def_level() > 0;
    if nulls > 0 && !nullable {
        return Err(ParquetError::General(format!(
            "{}: missing values in a required column",
            descr.name()
        )));
    }
    // The used entries sorted by value; a key's rank in that order is its index.
    let mut order: Vec<u32> = (0..n as u32).filter(|&i| used[i as usize]).collect();
    match entries {
        // A metric's dictionary (up to millions of values): sorted as plain integers, each
        // its value's order key above its index, not by comparisons that look both up.
        Entries::Float(v) => {
            let mut keyed: Vec<u64> = order
                .iter()
                .map(|&i| u64::from(float_order_key(v[i as usize])) << 32 | u64::from(i))
                .collect();
            keyed.sort_unstable();
            order = keyed.into_iter().map(|k| k as u32).collect();
        }
        _ => order.sort_unstable_by(|&a, &b| entries.cmp(a as usize, b as usize)),
    }
    let mut rank = vec![NULL_KEY; if narrow { KEY_TABLE } else { n }];
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    let width = stored_width(order.len());
    // 16-bit indices: each entry's slot in the dictionary page (by rank), see
    // [`interleaved_slots`]; other widths keep the entries in value order.
    let slots = (width == 16).then(|| {
        let mut counts = vec![0u64; order.len()];
        match &entry_rows {
            Some(rows) => {
                for (r, &i) in order.iter().enumerate() {
                    counts[r] = rows[i as usize];
                }
            }
            None => keys.each(|k, rows| {
                if k != K::NULL {
                    counts[rank[k.index()] as usize] += rows;
                }
            }),
        }
        interleaved_slots(&counts)
    });
    let page_rows = (DATA_PAGE_BYTES * 8 / usize::from(width)).clamp(1, PAGE_ROWS);
    let is_float = matches!(entries, Entries::Float(_));

    // The pages, uncompressed: the dictionary, then the data pages.
    let mut dictionary = Vec::new();
    let dictionary_entries = match &slots {
        None => {
            for &i in &order {
                entries.put_plain(i as usize, &mut dictionary);
            }
            order.len()
        }
        Some(slots) => {
            // Slots no entry takes repeat the entry before them (zstd stores a repeat as a
            // match; no index points at them).
            let len = slots.iter().max().map_or(0, |&s| s as usize + 1);
            let mut rank_of_slot = vec![u32::MAX; len];
            for (r, &s) in slots.iter().enumerate() {
                rank_of_slot[s as usize] = r as u32;
            }
            let mut last = 0;
            for &r in &rank_of_slot {
                if r != u32::MAX {
                    last = r;
                }
                entries.put_plain(order[last as usize] as usize, &mut dictionary);
            }
            len
        }
    };
    let rows = keys.rows();
    let mut compressor = PageCompressor::new(level, rows.div_ceil(page_rows))?;
    compressor.push(dictionary)?;
    // The first error compressing a page (the encoders hand pages over without a result).
    let mut failed = None;
    let mut column_index = ColumnIndexBuilder::new(descr.physical_type());
    // Per page (with values): its lowest and highest rank, for the boundary order.
    let pages = DataPages {
        page_rows,
        width,
        nulls: nulls > 0,
        nullable,
        narrow,
        rank: &rank,
        slots: slots.as_deref(),
    };
    let mut page_bounds: Vec<(u32, u32)> = Vec::new();
    let mut add_page = |buf: Vec<u8>, bounds: Option<(u32, u32)>, page_nulls: i64| {
        if let Err(e) = compressor.push(buf) {
            failed.get_or_insert(e);
        }
        let nan_count = is_float.then_some(0);
        match bounds {
            None => column_index.append(true, Vec::new(), Vec::new(), page_nulls, nan_count),
            Some((lo, hi)) => {
                let min = entries.bound(order[lo as usize] as usize, false).0;
                let max = entries.bound(order[hi as usize] as usize, true).0;
                column_index.append(false, min, max, page_nulls, nan_count);
                page_bounds.push((lo, hi));
            }
        }
    };
    match (keys, width) {
        (Keys::Rows(keys), 8) => pages.encode::<K, u8>(keys, &mut add_page),
        (Keys::Rows(keys), 16) => pages.encode::<K, u16>(keys, &mut add_page),
        (Keys::Rows(keys), _) => pages.encode::<K, u32>(keys, &mut add_page),
        (Keys::Runs(runs), _) => pages.encode_runs(runs, &mut add_page),
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let (compressed_pages, plain_lens) = compressor.finish()?;
    let mut rows_before = 0;
    let pages = plain_lens
        .into_iter()
        .zip(compressed_pages)
        .enumerate()
        .map(|(i, (plain_len, buf))| {
            let page = if i == 0 {
                Page::DictionaryPage {
                    buf,
                    num_values: dictionary_entries as u32,
                    encoding: Encoding::PLAIN,
                    is_sorted: slots.is_none(),
                }
            } else {
                let page_rows = page_rows.min(rows - rows_before);
                rows_before += page_rows;
                chunk::data_page(buf, page_rows, Encoding::RLE_DICTIONARY)
            };
            (page, plain_len)
        })
        .collect();
    // The chunk's lowest and highest values are those of its rows (a float dictionary may
    // hold entries no row uses).
    let lowest = page_bounds.iter().map(|b| b.0).min();
    let highest = page_bounds.iter().map(|b| b.1).max();
    let bounds = lowest
        .zip(highest)
        .map(|(lo, hi)| (order[lo as usize] as usize, order[hi as usize] as usize));
    let info = chunk::ChunkInfo {
        encodings: vec![Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY],
        statistics: entries.statistics(bounds, nulls),
        column_index,
        rows: rows as u64,
    };
    chunk::write_chunk(descr, level, pages, info, &page_bounds)
}

#[cfg(test)]
mod tests {
    #[test]
    fn float_order_key_orders_as_total_cmp() {
        let mut values = vec![0.0f32, -0.0, 1.0, -1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, f32::MAX, f32::MIN, f32::from_bits(1), f32::from_bits(0x8000_0001)];
        let mut bits: u32 = 7;
        for _ in 0..20_000 {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            values.push(f32::from_bits(bits));
        }
        for a in values.iter().step_by(97) {
            for b in &values {
                assert_eq!(super::float_order_key(*a).cmp(&super::float_order_key(*b)), a.total_cmp(b), "{a:e} {b:e}");
            }
        }
    }

    use super::*;
    use parquet::basic::BoundaryOrder;

    /// A chunk whose first data page gains nothing from the slow level (random keys) is
    /// compressed at level 1 throughout; one that gains (text of repeated words, matched
    /// better by the slower search) at the level asked for. Both judged with zstd itself.
    #[test]
    fn compression_level_follows_the_first_data_page() {
        let z = |data: &[u8], level| zstd::bulk::compress(data, level).unwrap();
        // The pages compressed at the end, side by side, and as they come on this thread
        // alone (a column worker's): the same bytes.
        let compress_all = |pages: &[Vec<u8>], level: ZstdLevel| -> Result<Vec<Bytes>> {
            let all = super::compress_all(pages, level)?;
            let one_by_one = with_compress_threads(1, || -> Result<Vec<Bytes>> {
                let mut c = PageCompressor::new(level, pages.len() - 1)?;
                for page in pages {
                    c.push(page.clone())?;
                }
                let (compressed, plain_lens) = c.finish()?;
                assert_eq!(plain_lens, pages.iter().map(Vec::len).collect::<Vec<_>>());
                Ok(compressed)
            })?;
            assert_eq!(all, one_by_one);
            Ok(all)
        };
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        };
        // Random keys below 64: the entropy coder saves a quarter at any level; there are no
        // matches to find.
        let noisy: Vec<Vec<u8>> = (0..4)
            .map(|_| random(1 << 18).into_iter().map(|b| b & 63).collect())
            .collect();
        assert_ne!(z(&noisy[1], 9), z(&noisy[1], 1), "the levels must differ on these pages for this test to mean something");
        let got = compress_all(&noisy, ZstdLevel::try_new(9).unwrap()).unwrap();
        assert_eq!(got[0].as_ref(), z(&noisy[0], 3), "the dictionary page: level 3");
        for (page, bytes) in noisy.iter().zip(&got).skip(1) {
            assert_eq!(bytes.as_ref(), z(page, 1), "noisy data pages: level 1");
        }
        // Random bytes: level 1 saves nothing; the data pages are stored.
        let random_pages: Vec<Vec<u8>> = (0..4).map(|_| random(1 << 18)).collect();
        let trial = &random_pages[1][..LEVEL_TRIAL_BYTES];
        assert!(z(trial, 1).len() as f64 > (1.0 - STORE_GAIN) * trial.len() as f64);
        let got = compress_all(&random_pages, ZstdLevel::try_new(9).unwrap()).unwrap();
        assert_eq!(got[0].as_ref(), z(&random_pages[0], 3), "the dictionary page: level 3");
        // The first data page, the trial's whole, keeps its level 1 bytes.
        assert_eq!(got[1].as_ref(), z(&random_pages[1], 1));
        for (page, bytes) in random_pages.iter().zip(&got).skip(2) {
            assert_eq!(bytes.as_ref(), z(page, STORE_LEVEL), "random data pages: the store level");
        }
        // zstd stores such pages at level 1 too; the choice itself, by hand: level 7 gains
        // 1% over level 1 or more (then used for all), level 1 2% over the bytes or more.
        assert_eq!(judged_levels(7, 1000, 900, 910), (7, 7));
        assert_eq!(judged_levels(7, 1000, 902, 910), (1, 3));
        assert_eq!(judged_levels(7, 1000, 975, 979), (1, 3));
        assert_eq!(judged_levels(7, 1000, 981, 981), (STORE_LEVEL, 3));
        assert_eq!(judged_levels(2, 1000, 990, 990), (STORE_LEVEL, 2));
        // At a level below 3 the dictionary page keeps it.
        let got = compress_all(&random_pages, ZstdLevel::try_new(2).unwrap()).unwrap();
        assert_eq!(got[0].as_ref(), z(&random_pages[0], 2));
        // Pages of 512 KiB of text: words from a vocabulary of 300, the first ones far more
        // often, which level 9's search matches better than level 1's.
        let vocabulary: Vec<Vec<u8>> = (0..300)
            .map(|_| {
                let len = 3 + random(1)[0] as usize % 9;
                random(len).into_iter().map(|b| b'a' + b % 26).collect()
            })
            .collect();
        let mut page = || -> Vec<u8> {
            let mut text = Vec::new();
            while text.len() < 512 << 10 {
                // Word i drawn with probability about 1 / (i + 1) (Zipf's law, as in text).
                let r = random(4);
                let u = f64::from(u32::from_le_bytes([r[0], r[1], r[2], r[3]])) / f64::from(u32::MAX);
                let i = (301f64.powf(u) - 1.0) as usize;
                text.extend_from_slice(&vocabulary[i.min(299)]);
                text.push(b' ');
            }
            text
        };
        let smooth: Vec<Vec<u8>> = (0..4).map(|_| page()).collect();
        let trial = &smooth[1][..LEVEL_TRIAL_BYTES];
        assert!(
            (z(trial, 9).len() as f64) < 0.95 * z(trial, 1).len() as f64,
            "the smooth pages must gain well over LEVEL_GAIN from level 9 for this test to mean something"
        );
        let got = compress_all(&smooth, ZstdLevel::try_new(9).unwrap()).unwrap();
        for (page, bytes) in smooth.iter().zip(&got) {
            assert_eq!(bytes.as_ref(), z(page, 9), "smooth pages: level 9");
        }
        // A dictionary page and one data page: no judging, both at the level asked; a
        // dictionary page alone.
        let got = compress_all(&smooth[..2], ZstdLevel::try_new(9).unwrap()).unwrap();
        assert_eq!(got[1].as_ref(), z(&smooth[1], 9));
        let got = compress_all(&noisy[..1], ZstdLevel::try_new(9).unwrap()).unwrap();
        assert_eq!(got[0].as_ref(), z(&noisy[0], 9));
    }

    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int32Type};
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::data_type::AsBytes;
    use parquet::file::metadata::PageIndexPolicy;
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    /// A Parquet file of one row group whose columns are written by `encode_chunk`, read
    /// back by arrow-rs's reader (with its page index).
    fn write_and_read(
        message: &str,
        columns: &[(Entries<'_>, Vec<u32>)],
    ) -> (
        arrow_array::RecordBatch,
        parquet::file::metadata::ParquetMetaData,
    ) {
        read_back(write_file(message, columns))
    }

    /// The rows and metadata of a Parquet file of one row group, read by arrow-rs's reader
    /// (with its page index).
    fn read_back(
        file: Bytes,
    ) -> (
        arrow_array::RecordBatch,
        parquet::file::metadata::ParquetMetaData,
    ) {
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
            file,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .unwrap();
        let metadata = builder.metadata().as_ref().clone();
        let mut reader = builder.with_batch_size(8 << 20).build().unwrap();
        (reader.next().unwrap().unwrap(), metadata)
    }

    /// The bytes of a Parquet file of one row group whose columns are written by
    /// `encode_chunk` (zstd level 3).
    fn write_file(message: &str, columns: &[(Entries<'_>, Vec<u32>)]) -> Bytes {
        let schema = Arc::new(parse_message_type(message).unwrap());
        let mut file =
            SerializedFileWriter::new(Vec::new(), schema, Arc::new(WriterProperties::new()))
                .unwrap();
        let mut rg = file.next_row_group().unwrap();
        for (i, (entries, keys)) in columns.iter().enumerate() {
            let descr = file_descr(message, i);
            let (bytes, close) =
                encode_chunk(&descr, entries, keys, ZstdLevel::try_new(3).unwrap()).unwrap();
            rg.append_column(&bytes, close).unwrap();
        }
        rg.close().unwrap();
        Bytes::from(file.into_inner().unwrap())
    }

    fn file_descr(message: &str, i: usize) -> ColumnDescPtr {
        let schema = Arc::new(parse_message_type(message).unwrap());
        parquet::schema::types::SchemaDescriptor::new(schema).column(i)
    }

    #[test]
    fn chunks_read_back_with_statistics_and_page_index() {
        // Floats with a missing value, zeros of both signs and a dictionary in first-seen
        // order; text whose entries are not sorted and one of which is unused; integers.
        let floats = [0.5f32, -0.0, f32::NAN, 2.25, 0.5, 0.0, -1.5];
        let d = FloatDictionary::build(&floats, 100).unwrap();
        assert_eq!(
            d.values.len(),
            5,
            "0.5, -0.0, 2.25, 0.0, -1.5: {:?}",
            d.values
        );
        assert_eq!(d.keys[2], NULL_KEY);
        assert_eq!(d.keys[0], d.keys[4]);
        let long = "x".repeat(70);
        let texts = Entries::Text(vec!["pear", "apple", "unused", long.as_str()]);
        let text_keys = vec![0, 1, 0, 3, 1, 0, 0];
        let ints = Entries::Int32(vec![7, -3, 12]);
        let int_keys = vec![NULL_KEY, 2, 1, 1, 0, NULL_KEY, 2];
        let message = "message m { optional float f; required binary t (UTF8); optional int32 i; }";
        let (batch, metadata) = write_and_read(
            message,
            &[
                (Entries::Float(d.values.clone()), d.keys.clone()),
                (texts, text_keys),
                (ints, int_keys),
            ],
        );
        let f = batch.column(0).as_primitive::<Float32Type>();
        for (row, want) in floats.iter().enumerate() {
            if want.is_nan() {
                assert!(f.is_null(row));
            } else {
                assert_eq!(f.value(row).to_bits(), want.to_bits(), "row {row}");
            }
        }
        let t = batch.column(1).as_string::<i32>();
        let want_t = [
            "pear",
            "apple",
            "pear",
            long.as_str(),
            "apple",
            "pear",
            "pear",
        ];
        assert_eq!(t.iter().map(|v| v.unwrap()).collect::<Vec<_>>(), want_t);
        let i = batch.column(2).as_primitive::<Int32Type>();
        assert_eq!(
            i.iter().collect::<Vec<_>>(),
            vec![None, Some(12), Some(-3), Some(-3), Some(7), None, Some(12)]
        );

        let rg = metadata.row_group(0);
        match rg.column(0).statistics().unwrap() {
            Statistics::Float(s) => {
                assert_eq!(s.min_opt().map(|v| v.to_bits()), Some((-1.5f32).to_bits()));
                assert_eq!(s.max_opt(), Some(&2.25));
                assert_eq!(s.null_count_opt(), Some(1));
            }
            other => panic!("{other:?}"),
        }
        match rg.column(1).statistics().unwrap() {
            Statistics::ByteArray(s) => {
                assert_eq!(s.min_opt().unwrap().as_bytes(), b"apple");
                // 70 x's cut to 64, the last one incremented: above every value.
                let mut max = "x".repeat(63);
                max.push('y');
                assert_eq!(s.max_opt().unwrap().as_bytes(), max.as_bytes());
                assert!(!s.max_is_exact());
                assert_eq!(s.null_count_opt(), Some(0));
            }
            other => panic!("{other:?}"),
        }
        match rg.column(2).statistics().unwrap() {
            Statistics::Int32(s) => {
                assert_eq!(
                    (s.min_opt(), s.max_opt(), s.null_count_opt()),
                    (Some(&-3), Some(&12), Some(2))
                );
            }
            other => panic!("{other:?}"),
        }
        // The dictionaries hold only the entries used ("unused" is not).
        assert_eq!(rg.column(1).num_values(), 7);
        let index = metadata.page_index_for_row_group(0);
        match index.column_index(2).unwrap() {
            ColumnIndexMetaData::INT32(ci) => {
                assert_eq!(ci.min_value(0), Some(&-3));
                assert_eq!(ci.max_value(0), Some(&12));
                assert_eq!(ci.null_count(0), Some(2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(index.offset_index(0).unwrap().page_locations().len(), 1);
    }

    #[test]
    fn runs_read_back_as_their_rows() {
        // A nullable text column (8-bit indices) and an integer column of 300 entries (16-bit
        // indices, slots by use), from runs that cross the page ends, meet a run of the same
        // key, hold no rows, and have no value; read back by arrow-rs as the same rows, with
        // the same statistics and page index as the chunk written row by row.
        let big = DATA_PAGE_BYTES as u32;
        let text_runs = vec![(2, 3), (NULL_KEY, 2), (0, big - 2), (0, 5), (3, 0), (3, big / 2), (NULL_KEY, 1), (1, 10)];
        let rows: u32 = text_runs.iter().map(|r| r.1).sum();
        // Every one of the 300 entries used (600 rows), then long runs.
        let mut int_runs: Vec<(u32, u32)> = (0..300).rev().map(|k| (k, 1 + k % 3)).collect();
        int_runs.extend([(150, big / 2 - 600), (7, rows - big / 2)]);
        let expand = |runs: &[(u32, u32)]| -> Vec<u32> {
            runs.iter().flat_map(|&(k, n)| std::iter::repeat_n(k, n as usize)).collect()
        };
        let text = || Entries::Text(vec!["b", "a", "c", "d"]);
        let ints = || Entries::Int32((0..300).collect());
        let message = "message m { optional binary t (UTF8); required int32 n; }";
        let level = ZstdLevel::try_new(3).unwrap();
        let schema = Arc::new(parse_message_type(message).unwrap());
        let mut file = SerializedFileWriter::new(Vec::new(), schema, Arc::new(WriterProperties::new())).unwrap();
        let mut rg = file.next_row_group().unwrap();
        for (i, (entries, runs)) in [(text(), &text_runs), (ints(), &int_runs)].into_iter().enumerate() {
            let (bytes, close) = encode_chunk_runs(&file_descr(message, i), &entries, runs, level).unwrap();
            rg.append_column(&bytes, close).unwrap();
        }
        rg.close().unwrap();
        let (from_runs, runs_meta) = read_back(Bytes::from(file.into_inner().unwrap()));
        let (from_rows, rows_meta) =
            write_and_read(message, &[(text(), expand(&text_runs)), (ints(), expand(&int_runs))]);
        assert_eq!(from_runs, from_rows);
        // By hand: the first rows, the nulls, a row past the first page.
        let t = from_runs.column(0).as_string::<i32>();
        assert_eq!(t.len(), rows as usize);
        assert_eq!(t.iter().take(6).collect::<Vec<_>>(), [Some("c"), Some("c"), Some("c"), None, None, Some("b")]);
        assert_eq!(t.null_count(), 3);
        assert_eq!(t.value(big as usize + 10), "d");
        let n = from_runs.column(1).as_primitive::<Int32Type>();
        assert_eq!((n.value(0), n.value(2), n.value(3), n.value(600), n.value(rows as usize - 1)), (299, 299, 298, 150, 7));
        for c in 0..2 {
            let (a, b) = (runs_meta.row_group(0).column(c), rows_meta.row_group(0).column(c));
            assert_eq!(a.statistics(), b.statistics(), "column {c}: statistics");
            assert_eq!(a.num_values(), b.num_values());
            let (ia, ib) = (runs_meta.page_index_for_row_group(0), rows_meta.page_index_for_row_group(0));
            let first_rows_a: Vec<i64> =
                ia.offset_index(c).unwrap().page_locations().iter().map(|p| p.first_row_index).collect();
            let first_rows_b: Vec<i64> =
                ib.offset_index(c).unwrap().page_locations().iter().map(|p| p.first_row_index).collect();
            assert_eq!(first_rows_a, first_rows_b, "column {c}: pages");
            assert!(first_rows_a.len() >= 2, "the runs must cross a page end for this test to mean something");
            assert_eq!(format!("{:?}", ia.column_index(c)), format!("{:?}", ib.column_index(c)), "column {c}: column index");
        }
    }

    #[test]
    fn all_null_chunk_and_many_pages() {
        // A nullable text column with no value; an integer column over several pages (a page
        // ends at DATA_PAGE_BYTES of 8-bit indices), counting up: ascending pages.
        let rows = DATA_PAGE_BYTES * 2 + 10;
        let entries = Entries::Int64((0..256).collect());
        let keys: Vec<u32> = (0..rows).map(|r| (r * 256 / rows) as u32).collect();
        let message = "message m { optional binary t (UTF8); required int64 n; }";
        let (batch, metadata) = write_and_read(
            message,
            &[
                (Entries::Text(vec!["a"]), vec![NULL_KEY; rows]),
                (entries, keys.clone()),
            ],
        );
        assert_eq!(batch.column(0).null_count(), rows);
        let n = batch
            .column(1)
            .as_primitive::<arrow_array::types::Int64Type>();
        assert!(n.iter().zip(&keys).all(|(v, &k)| v == Some(i64::from(k))));
        let rg = metadata.row_group(0);
        assert!(rg.column(0).statistics().unwrap().min_bytes_opt().is_none());
        assert_eq!(
            rg.column(0).statistics().unwrap().null_count_opt(),
            Some(rows as u64)
        );
        let index = metadata.page_index_for_row_group(0);
        let pages = index.offset_index(1).unwrap();
        assert_eq!(pages.page_locations().len(), 3);
        assert_eq!(
            pages.page_locations()[1].first_row_index,
            DATA_PAGE_BYTES as i64
        );
        assert_eq!(
            index.column_index(1).unwrap().get_boundary_order(),
            Some(BoundaryOrder::ASCENDING)
        );
    }

    #[test]
    fn interleave_splits_even_and_odd_bits() {
        assert_eq!(interleave(0), 0);
        assert_eq!(interleave(1), 0x0001);
        assert_eq!(interleave(2), 0x0100);
        assert_eq!(interleave(3), 0x0101);
        // 0b1011: bits 0 and 2 (1, 0) to the low byte, bits 1 and 3 (1, 1) to the high one.
        assert_eq!(interleave(0b1011), 0x0301);
        assert_eq!(interleave(0xffff), 0xffff);
        assert_eq!(interleave(0x5555), 0x00ff);
        assert_eq!(interleave(0xaaaa), 0xff00);
    }

    #[test]
    fn sixteen_bit_chunks_give_the_most_used_values_the_small_slots() {
        // 1,000 values (16-bit indices) over two data pages: value j (j / 8) is used once,
        // except 3.5 (most used), 100.0, 7.0 and 0.25 (fewer, in that order); some rows have
        // no value.
        let values: Vec<f32> = (0..1000).map(|j| j as f32 / 8.0).collect();
        let index_of = |v: f32| (v * 8.0) as u32;
        let page_rows = DATA_PAGE_BYTES * 8 / 16;
        let rows = page_rows + 5000;
        let mut keys: Vec<u32> = (0..rows as u32).map(|r| r % 1000).collect();
        for (v, every) in [(3.5f32, 3), (100.0, 5), (7.0, 11), (0.25, 13)] {
            for r in (7..rows).step_by(every) {
                keys[r] = index_of(v);
            }
        }
        for r in (0..rows).step_by(1009) {
            keys[r] = NULL_KEY;
        }
        // The chunk's and the pages' lowest and highest values, worked out from the keys.
        let range = |keys: &[u32]| {
            let used = keys.iter().filter(|&&k| k != NULL_KEY).map(|&k| values[k as usize]);
            used.fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
        };
        let message = "message m { optional float f; }";
        let file = write_file(message, &[(Entries::Float(values.clone()), keys.clone())]);
        let (batch, metadata) = read_back(file.clone());
        let f = batch.column(0).as_primitive::<Float32Type>();
        for (row, &k) in keys.iter().enumerate() {
            if k == NULL_KEY {
                assert!(f.is_null(row), "row {row}");
            } else {
                assert_eq!(f.value(row), values[k as usize], "row {row}");
            }
        }
        let index = metadata.page_index_for_row_group(0);
        match index.column_index(0).unwrap() {
            ColumnIndexMetaData::FLOAT(ci) => {
                for (page, rows) in [(0, &keys[..page_rows]), (1, &keys[page_rows..])] {
                    let (lo, hi) = range(rows);
                    assert_eq!(ci.min_value(page), Some(&lo), "page {page}");
                    assert_eq!(ci.max_value(page), Some(&hi), "page {page}");
                }
            }
            other => panic!("{other:?}"),
        }
        match metadata.row_group(0).column(0).statistics().unwrap() {
            Statistics::Float(s) => {
                assert_eq!((s.min_opt(), s.max_opt()), (Some(&0.0), Some(&124.875)));
            }
            other => panic!("{other:?}"),
        }

        // The dictionary page, read as it is stored.
        let file = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        use parquet::file::reader::FileReader;
        let mut pages = file.get_row_group(0).unwrap().get_column_page_reader(0).unwrap();
        let Some(Page::DictionaryPage { buf, num_values, is_sorted, .. }) = pages.get_next_page().unwrap()
        else {
            panic!("the chunk starts with its dictionary page");
        };
        assert!(!is_sorted);
        let slots: Vec<f32> = buf
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(slots.len(), num_values as usize);
        // Uses 0..4 at slots 0, 0x01, 0x100, 0x101; 1,000 uses fit below interleave(1023).
        assert_eq!([slots[0], slots[1], slots[0x100], slots[0x101]], [3.5, 100.0, 7.0, 0.25]);
        assert!(slots.len() <= 0x1f1f + 1, "{} slots", slots.len());
        let mut distinct: Vec<u32> = slots.iter().map(|v| v.to_bits()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 1000, "every value once, the unused slots repeats");
    }

    #[test]
    fn narrow_keys_read_back() {
        // The same column from u8 and u16 keys (their largest value: no value).
        let entries = Entries::Text(vec!["b", "a", "c"]);
        let message = "message m { optional binary t (UTF8); }";
        let descr = file_descr(message, 0);
        let level = ZstdLevel::try_new(3).unwrap();
        let (bytes8, _) = encode_chunk(&descr, &entries, &[0u8, u8::MAX, 2, 1], level).unwrap();
        let (bytes16, _) = encode_chunk(&descr, &entries, &[0u16, u16::MAX, 2, 1], level).unwrap();
        let (bytes32, _) = encode_chunk(&descr, &entries, &[0u32, NULL_KEY, 2, 1], level).unwrap();
        assert_eq!(bytes8, bytes32);
        assert_eq!(bytes16, bytes32);
        let (batch, _) = write_and_read(message, &[(entries, vec![0, NULL_KEY, 2, 1])]);
        let t = batch.column(0).as_string::<i32>();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            vec![Some("b"), None, Some("c"), Some("a")]
        );
    }

    #[test]
    fn float_zero_bounds_follow_the_format() {
        // The format: a minimum of zero is written -0.0, a maximum of zero +0.0.
        let d = FloatDictionary::build(&[0.0, 1.0, -2.0, 0.0], 10).unwrap();
        let (_, metadata) = write_and_read(
            "message m { required float f; }",
            &[(Entries::Float(vec![0.0, 1.0]), vec![0, 1, 0])],
        );
        match metadata.row_group(0).column(0).statistics().unwrap() {
            Statistics::Float(s) => {
                assert_eq!(s.min_opt().map(|v| v.to_bits()), Some((-0.0f32).to_bits()))
            }
            other => panic!("{other:?}"),
        }
        let (_, metadata) = write_and_read(
            "message m { required float f; }",
            &[(Entries::Float(d.values), vec![2, 0])],
        );
        match metadata.row_group(0).column(0).statistics().unwrap() {
            Statistics::Float(s) => {
                assert_eq!(s.max_opt().map(|v| v.to_bits()), Some(0.0f32.to_bits()))
            }
            other => panic!("{other:?}"),
        }
    }

    /// Values are rounded on the way in, each distinct one once: values that round alike
    /// share an entry, whichever comes first (the rounded one itself, or one that rounds
    /// to it), and the entries are the rounded values.
    #[test]
    fn float_dictionary_rounds_each_new_value_once() {
        let calls = std::cell::Cell::new(0);
        // To one decimal, half away from zero (as the converter's rounding).
        let round = |v: f32| {
            calls.set(calls.get() + 1);
            ((v as f64 * 10.0).round() / 10.0) as f32
        };
        let mut d = FloatDictionary::new(100);
        // 0.12 and 0.1 share an entry (0.1 first seen through 0.12); 0.26, 0.3 and 0.31
        // share 0.3; NaN has no key.
        assert!(d.push(&[0.12, 0.1, 0.26, f32::NAN, 0.12, 0.3], round));
        assert!(d.push(&[0.31, 0.1, 0.26, 0.7], round));
        assert_eq!(d.values, [0.1, 0.3, 0.7]);
        assert_eq!(d.keys, [0, 0, 1, NULL_KEY, 0, 1, 1, 0, 1, 2]);
        // Rounded: 0.12, 0.26, 0.31 and 0.7, once each. 0.1 and 0.3 were entered as the
        // rounded values of 0.12 and 0.26, and nothing is rounded again when seen again.
        assert_eq!(calls.get(), 4);
        // Past the limit: a new rounded value is refused, a known one is not.
        let mut d = FloatDictionary::new(2);
        assert!(d.push(&[0.12, 0.26, 0.14], round));
        assert!(!d.push(&[0.5], round));
    }

    /// By units and by hash alike: the entries are the rounded values in order of first
    /// appearance, each row keyed to its value's rounded entry.
    #[test]
    fn float_dictionary_by_units_keys_as_by_hash() {
        let r = Rounding::new(4);
        // By hand, to 4 decimals (ties to even on x × 10^4): 0.12344 → 0.1234, 0.12346 and
        // 0.12345 → 0.1235 (1234.5 is a tie only in decimal; its float64 product is just
        // above), -0.00004 → 0 (as 0.00001), 30.00006 → 30.0001 (past the direct table:
        // hashed), -2.5 → -2.5 (negative: hashed), NaN → no key.
        let mut d = FloatDictionary::new(100);
        assert!(d.push_rounded(&[0.12344, 0.12346, f32::NAN, -0.00004, 0.00001, 0.12345, 30.00006, -2.5, 0.1234], r));
        assert_eq!(d.values, [0.1234, 0.1235, 0.0, 30.0001, -2.5]);
        assert_eq!(d.keys, [0, 1, NULL_KEY, 2, 2, 1, 3, 4, 0]);
        // Against the hash path, on values across every magnitude and sign, in batches.
        let mut bits: u32 = 12345;
        let mut values: Vec<f32> = Vec::new();
        for i in 0..60_000 {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let unit = (bits >> 8) as f32 / (1 << 24) as f32;
            values.push(match i % 6 {
                0 => unit * 30.0,
                1 => unit,
                2 => -unit * 5.0,
                3 => unit * 1e6,
                4 => f32::from_bits(bits),
                _ => (unit * 300.0 * 10_000.0).round() / 10_000.0,
            });
        }
        let mut by_units = FloatDictionary::new(1 << 20);
        let mut by_hash = FloatDictionary::new(1 << 20);
        for batch in values.chunks(7_000) {
            assert!(by_units.push_rounded(batch, r));
            assert!(by_hash.push(batch, |v| r.to_f32(f64::from(v))));
        }
        assert!(by_units.values.iter().zip(&by_hash.values).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(by_units.values.len(), by_hash.values.len());
        assert_eq!(by_units.keys, by_hash.keys);
        // Both refuse the same new value past their limit.
        let limit = by_hash.values.len() / 2;
        let (mut a, mut b) = (FloatDictionary::new(limit), FloatDictionary::new(limit));
        let ok_a: Vec<bool> = values.chunks(7_000).map(|c| a.push_rounded(c, r)).collect();
        let ok_b: Vec<bool> = values.chunks(7_000).map(|c| b.push(c, |v| r.to_f32(f64::from(v)))).collect();
        assert_eq!(ok_a, ok_b);
        assert!(ok_a.contains(&false));
        assert_eq!(a.values.len(), b.values.len());
        assert_eq!(a.keys, b.keys);
    }

    #[test]
    fn float_dictionary_grows_and_gives_up_past_its_limit() {
        // More distinct values than the table's first size (4096 slots): it grows.
        let values: Vec<f32> = (0..10_000).map(|i| (i % 5000) as f32 * 0.25).collect();
        let d = FloatDictionary::build(&values, 5000).unwrap();
        assert_eq!(d.values.len(), 5000);
        for (row, &k) in d.keys.iter().enumerate() {
            assert_eq!(d.values[k as usize], values[row]);
        }
        assert!(FloatDictionary::build(&values, 4999).is_none());
    }

    #[test]
    fn text_bounds_cut_at_characters() {
        assert_eq!(text_bound("short", true), (b"short".to_vec(), true));
        // 63 ASCII bytes then a 2-byte character: the cut falls before it.
        let s = format!("{}é tail", "a".repeat(63));
        assert_eq!(text_bound(&s, false), ("a".repeat(63).into_bytes(), false));
        let mut upper = "a".repeat(62);
        upper.push('b');
        assert_eq!(text_bound(&s, true), (upper.into_bytes(), false));
    }

    #[test]
    fn widths() {
        assert_eq!(stored_width(1), 8);
        assert_eq!(stored_width(256), 8);
        assert_eq!(stored_width(257), 16);
        assert_eq!(stored_width(65536), 16);
        assert_eq!(stored_width(65537), 17);
        assert_eq!(stored_width(200_000), 18);
    }

    #[test]
    fn hybrid_round_trip() {
        // Runs, short repeats and a tail that is not a whole group.
        let mut values: Vec<u32> = (0..37).map(|i| (i * 7919) % 1000).collect();
        values.extend(std::iter::repeat_n(5, 20));
        values.extend((0..1000).map(|i| (i * 31) % 977));
        values.extend([3, 3, 3]);
        for width in 1..=32u8 {
            // Spread over the whole width (the top bit set too).
            let values: Vec<u32> = values
                .iter()
                .map(|&v| {
                    if width == 32 {
                        v.wrapping_mul(4_294_967)
                    } else {
                        (v * 4099) % (1 << width)
                    }
                })
                .collect();
            let mut out = Vec::new();
            encode_hybrid(&values, width, &mut out);
            assert_eq!(
                decode_hybrid(&out, width, values.len()).unwrap(),
                values,
                "width {width}"
            );
            // Held as u16 and u8 where they fit: the same bytes.
            if width <= 16 {
                let mut narrow = Vec::new();
                encode_hybrid(&values.iter().map(|&v| v as u16).collect::<Vec<_>>(), width, &mut narrow);
                assert_eq!(narrow, out, "u16, width {width}");
            }
            if width <= 8 {
                let mut narrow = Vec::new();
                encode_hybrid(&values.iter().map(|&v| v as u8).collect::<Vec<_>>(), width, &mut narrow);
                assert_eq!(narrow, out, "u8, width {width}");
            }
        }
    }

    #[test]
    fn bit_pack_matches_the_bit_by_bit_layout() {
        // The spec's layout, one bit at a time: bit b of value i at bit i * width + b of the
        // output, least significant bit of a byte first, the last group of 8 padded.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for width in 0..=32u8 {
            for len in [0usize, 1, 7, 8, 9, 16, 23, 64, 505] {
                let values: Vec<u32> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state as u32) & (((1u64 << width) - 1) as u32)
                    })
                    .collect();
                let w = usize::from(width);
                let mut want = vec![0u8; len.div_ceil(8) * w];
                for (i, &v) in values.iter().enumerate() {
                    for b in (0..w).filter(|&b| v >> b & 1 == 1) {
                        want[(i * w + b) / 8] |= 1 << ((i * w + b) % 8);
                    }
                }
                let mut out = vec![0xAB];
                bit_pack(&values, width, &mut out);
                assert_eq!(out[0], 0xAB, "what was there before stays");
                assert_eq!(out[1..], want, "width {width}, {len} values");
                // The same values held as u8 or u16 where they fit.
                if width <= 16 {
                    let narrow: Vec<u16> = values.iter().map(|&v| v as u16).collect();
                    let mut out = vec![0xAB];
                    bit_pack(&narrow, width, &mut out);
                    assert_eq!(out[1..], want, "u16, width {width}, {len} values");
                }
                if width <= 8 {
                    let narrow: Vec<u8> = values.iter().map(|&v| v as u8).collect();
                    let mut out = vec![0xAB];
                    bit_pack(&narrow, width, &mut out);
                    assert_eq!(out[1..], want, "u8, width {width}, {len} values");
                }
            }
        }
    }

    #[test]
    fn decodes_hand_written_runs() {
        // From the Parquet spec's example: bit-packed, width 3, values 0..8:
        // header (1 group << 1 | 1) = 3, then 0b10001000 0b11000110 0b11111010.
        let data = [3u8, 0b1000_1000, 0b1100_0110, 0b1111_1010, 10 << 1, 7];
        assert_eq!(
            decode_hybrid(&data, 3, 18).unwrap(),
            vec![0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]
        );
    }
}
