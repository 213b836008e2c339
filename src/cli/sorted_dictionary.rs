//! Float column chunks with a value-sorted dictionary and byte-aligned dictionary indices.
//!
//! arrow-rs dictionary-encodes a float column with the dictionary in order of first
//! appearance and the indices bit-packed at the narrowest width (`ceil(log2(entries))`, e.g.
//! 11 or 13 bits). zstd, which works on bytes, compresses such bit streams poorly: an index
//! straddles byte boundaries. The Parquet format lets every data page declare the bit width
//! of its indices (one byte before them), so this module rewrites the pages of a column
//! chunk as they are written:
//!
//! - the dictionary page holds the values sorted (and says so: `is_sorted`), which zstd
//!   compresses better, and the indices are renumbered to match;
//! - indices that need 9–16 bits are stored in 16, those that need 1–8 in 8 (wider ones
//!   keep their width: 24-bit padding measured larger);
//! - pages are zstd-compressed here (the column writer is set up without compression and
//!   the chunk's metadata names zstd afterwards).
//!
//! Readers decode any width from 0 to 32 (pyarrow, pandas, polars, DuckDB and arrow-rs are
//! checked by `tests/cli_tool.rs`). The column writer (arrow-rs) still computes the levels,
//! statistics and page index; only the bytes of each page change.

use std::io::Write;

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::{get_column_writer, ColumnCloseResult, ColumnWriter};
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterPropertiesPtr;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

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
        let b = *data
            .get(*at)
            .ok_or_else(|| ParquetError::General("dictionary indices end inside a run header".into()))?;
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
            let run = data
                .get(at..at + bytes)
                .ok_or_else(|| ParquetError::General("bit-packed run past the end of the page".into()))?;
            at += bytes;
            let n = (groups * 8).min(count - out.len());
            let mask = if w == 32 { u64::from(u32::MAX) } else { (1u64 << w) - 1 };
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

/// Encode `values` in the RLE / bit-packed hybrid encoding at `width` bits (≤ 32): runs of 8
/// or more equal values starting at a group boundary as RLE runs, the rest bit-packed.
pub fn encode_hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let w = usize::from(width);
    let value_bytes = w.div_ceil(8);
    let mut i = 0;
    // Start of the pending bit-packed values (always a whole number of groups before `i`,
    // except at the very end).
    let mut pending = 0;
    let flush = |out: &mut Vec<u8>, chunk: &[u32]| {
        for run in chunk.chunks(MAX_GROUPS * 8) {
            let groups = run.len().div_ceil(8);
            put_uleb(out, ((groups as u64) << 1) | 1);
            let (mut acc, mut bits) = (0u64, 0usize);
            for k in 0..groups * 8 {
                acc |= u64::from(run.get(k).copied().unwrap_or(0)) << bits;
                bits += w;
                while bits >= 8 {
                    out.push(acc as u8);
                    acc >>= 8;
                    bits -= 8;
                }
            }
        }
    };
    while i < values.len() {
        let v = values[i];
        let mut run = 1;
        while i + run < values.len() && values[i + run] == v {
            run += 1;
        }
        if run >= 8 {
            flush(out, &values[pending..i]);
            put_uleb(out, (run as u64) << 1);
            out.extend_from_slice(&v.to_le_bytes()[..value_bytes]);
            i += run;
            pending = i;
        } else {
            // Take a whole group into the bit-packed values.
            i = (i + 8).min(values.len());
        }
    }
    flush(out, &values[pending..]);
}

/// A [`PageWriter`] that sorts the dictionary, renumbers and widens the indices of every
/// dictionary-encoded data page, and compresses with zstd, then hands the pages on.
struct SortedDictionaryPages<'a, W: Write + Send> {
    inner: SerializedPageWriter<'a, W>,
    level: ZstdLevel,
    /// Whether pages start with definition levels (the column is nullable).
    has_def_levels: bool,
    /// New index of each old index, once the dictionary page was seen.
    renumber: Option<Vec<u32>>,
    width: u8,
}

impl<W: Write + Send> SortedDictionaryPages<'_, W> {
    fn compress(&self, data: &[u8]) -> Result<Bytes> {
        zstd::bulk::compress(data, self.level.compression_level())
            .map(Bytes::from)
            .map_err(|e| ParquetError::External(Box::new(e)))
    }

    /// The page `buf` (uncompressed, V1 layout) with its indices renumbered and widened.
    fn rewrite_indices(&self, buf: &[u8], num_values: usize) -> Result<Vec<u8>> {
        let renumber = self
            .renumber
            .as_ref()
            .ok_or_else(|| ParquetError::General("a dictionary-encoded page came before the dictionary".into()))?;
        let (levels, values) = if self.has_def_levels {
            let len = buf
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| ParquetError::General("page too short for its levels".into()))?;
            let end = 4 + len;
            if end > buf.len() {
                return Err(ParquetError::General("levels past the end of the page".into()));
            }
            (&buf[..end], &buf[end..])
        } else {
            (&buf[..0], buf)
        };
        // Values present: the definition levels (width 1) that are 1.
        let present = if self.has_def_levels {
            decode_hybrid(&levels[4..], 1, num_values)?.iter().filter(|&&d| d == 1).count()
        } else {
            num_values
        };
        let (&width, packed) = values
            .split_first()
            .ok_or_else(|| ParquetError::General("page without its index width".into()))?;
        let mut indices = decode_hybrid(packed, width, present)?;
        for i in &mut indices {
            *i = *renumber
                .get(*i as usize)
                .ok_or_else(|| ParquetError::General(format!("index {i} outside the dictionary")))?;
        }
        let mut out = Vec::with_capacity(levels.len() + 1 + indices.len() * usize::from(self.width).div_ceil(8) + 16);
        out.extend_from_slice(levels);
        out.push(self.width);
        encode_hybrid(&indices, self.width, &mut out);
        Ok(out)
    }
}

impl<W: Write + Send> PageWriter for SortedDictionaryPages<'_, W> {
    fn write_page(&mut self, page: CompressedPage) -> Result<PageWriteSpec> {
        let rewritten = match page.compressed_page() {
            Page::DictionaryPage {
                buf,
                num_values,
                encoding,
                ..
            } => {
                if buf.len() != *num_values as usize * 4 {
                    return Err(ParquetError::General("dictionary page is not 4-byte values".into()));
                }
                let values: Vec<f32> = buf
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let mut order: Vec<u32> = (0..values.len() as u32).collect();
                order.sort_by(|&a, &b| values[a as usize].total_cmp(&values[b as usize]));
                let mut renumber = vec![0u32; values.len()];
                let mut sorted = Vec::with_capacity(buf.len());
                for (new, &old) in order.iter().enumerate() {
                    renumber[old as usize] = new as u32;
                    sorted.extend_from_slice(&values[old as usize].to_le_bytes());
                }
                self.renumber = Some(renumber);
                self.width = stored_width(values.len());
                CompressedPage::new(
                    Page::DictionaryPage {
                        buf: self.compress(&sorted)?,
                        num_values: *num_values,
                        encoding: *encoding,
                        is_sorted: true,
                    },
                    sorted.len(),
                )
            }
            Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
                statistics,
            } => {
                let plain = if matches!(encoding, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY) {
                    self.rewrite_indices(buf, *num_values as usize)?
                } else {
                    buf.to_vec()
                };
                CompressedPage::new(
                    Page::DataPage {
                        buf: self.compress(&plain)?,
                        num_values: *num_values,
                        encoding: *encoding,
                        def_level_encoding: *def_level_encoding,
                        rep_level_encoding: *rep_level_encoding,
                        statistics: statistics.clone(),
                    },
                    plain.len(),
                )
            }
            Page::DataPageV2 { .. } => {
                return Err(ParquetError::General("sorted dictionaries are written with V1 data pages".into()))
            }
        };
        self.inner.write_page(rewritten)
    }

    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
}

/// Encodes one float column chunk with a sorted dictionary (see the module docs).
/// `props` must have compression off and dictionary encoding on for this column; the chunk
/// returned says zstd at `level`.
pub struct SortedFloatChunk;

impl SortedFloatChunk {
    /// Encode `pieces` (each: the non-null values and one definition level per row) as one
    /// column chunk; returns its bytes and what the row group needs to append it.
    pub fn encode(
        descr: ColumnDescPtr,
        props: WriterPropertiesPtr,
        level: ZstdLevel,
        pieces: impl IntoIterator<Item = (Vec<f32>, Vec<i16>)>,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let mut sink = TrackedWrite::new(Vec::new());
        let close = {
            let pages = SortedDictionaryPages {
                inner: SerializedPageWriter::new(&mut sink),
                level,
                has_def_levels: descr.max_def_level() > 0,
                renumber: None,
                width: 0,
            };
            let ColumnWriter::FloatColumnWriter(mut writer) = get_column_writer(descr.clone(), props, Box::new(pages))
            else {
                return Err(ParquetError::General(format!("{} is not a float column", descr.name())));
            };
            for (values, def_levels) in pieces {
                let levels = (descr.max_def_level() > 0).then_some(def_levels.as_slice());
                writer.write_batch(&values, levels, None)?;
            }
            writer.close()?
        };
        let mut close = close;
        close.metadata = close.metadata.into_builder().set_compression(Compression::ZSTD(level)).build()?;
        Ok((Bytes::from(sink.into_inner()?), close))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for width in [8u8, 10, 16, 18, 32] {
            // Spread over the whole width (the top bit set too).
            let values: Vec<u32> = values
                .iter()
                .map(|&v| if width == 32 { v.wrapping_mul(4_294_967) } else { (v * 4099) % (1 << width) })
                .collect();
            let mut out = Vec::new();
            encode_hybrid(&values, width, &mut out);
            assert_eq!(decode_hybrid(&out, width, values.len()).unwrap(), values, "width {width}");
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
