//! `DELTA_BINARY_PACKED` column chunks of a required integer column (`token_position`, whose
//! values count up by one along a run of rows or repeat for a whole run), encoded here as the
//! converter walks its runs rather than by arrow-rs's column writer: that writer took the
//! positions as one vector (15 MB at seed scale, a page fault every 4 KB) and encoded them
//! 1,024 at a time with a statistics pass over each; 21-23 ms of the seed-scale convert's
//! write, here about 5 ms.
//!
//! The encoding ([Parquet's `DELTA_BINARY_PACKED`]): a page starts with a header (values per
//! block, miniblocks per block, values in the page, the first value as a zigzag ULEB128), then
//! blocks of the deltas between consecutive values: each block holds its smallest delta
//! (zigzag ULEB128), one bit width per miniblock, and each miniblock's deltas less the
//! smallest, bit-packed least significant bit first at that width. A miniblock of the last
//! block that holds no delta has width 0 and no bytes; one that holds some is padded to its
//! full length. Deltas wrap in the column's physical width (32 or 64 bits), as readers
//! undo them.
//!
//! [Parquet's `DELTA_BINARY_PACKED`]: https://parquet.apache.org/docs/file-format/data-pages/encodings/#delta-encoding-delta_binary_packed--5

use parquet::basic::{Encoding, Type as PhysicalType, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnIndexBuilder;
use parquet::schema::types::ColumnDescPtr;

use super::chunk;
use super::dictionary::Entries;

/// Values per block.
const BLOCK: usize = 128;
/// Miniblocks per block.
const MINIBLOCKS: usize = 4;
/// Values per miniblock.
const MINIBLOCK: usize = BLOCK / MINIBLOCKS;

/// One encoded page: its bytes (not compressed), rows, and lowest and highest value.
#[derive(Debug, PartialEq, Eq)]
pub struct DeltaPage {
    pub bytes: Vec<u8>,
    pub rows: usize,
    pub min: i64,
    pub max: i64,
}

/// A column's values encoded into pages of at most `page_rows` rows as they are pushed.
pub struct DeltaPages {
    /// Deltas wrap at 32 bits (an `INT32` column), else at 64.
    wrap32: bool,
    page_rows: usize,
    done: Vec<DeltaPage>,
    /// The page being filled: its rows, first, last, lowest and highest value.
    rows: usize,
    first: i64,
    last: i64,
    min: i64,
    max: i64,
    /// Deltas of the block being filled.
    deltas: [i64; BLOCK],
    held: usize,
    /// The page's finished blocks.
    blocks: Vec<u8>,
}

impl DeltaPages {
    /// Pages of a column whose physical type is `INT32` (`wrap32`) or `INT64`.
    pub fn new(wrap32: bool, page_rows: usize) -> DeltaPages {
        DeltaPages {
            wrap32,
            page_rows: page_rows.max(1),
            done: Vec::new(),
            rows: 0,
            first: 0,
            last: 0,
            min: 0,
            max: 0,
            deltas: [0; BLOCK],
            held: 0,
            blocks: Vec::new(),
        }
    }

    /// Appends a value (one that an `INT32` column holds, when `wrap32`).
    #[inline]
    pub fn push(&mut self, v: i64) {
        if self.rows == 0 {
            (self.first, self.min, self.max) = (v, v, v);
        } else {
            let delta = if self.wrap32 {
                i64::from((v as i32).wrapping_sub(self.last as i32))
            } else {
                v.wrapping_sub(self.last)
            };
            self.deltas[self.held] = delta;
            self.held += 1;
            if self.held == BLOCK {
                self.flush_block();
            }
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.last = v;
        self.rows += 1;
        if self.rows == self.page_rows {
            self.finish_page();
        }
    }

    /// Appends `len` values from `first` on, each `step` more than the one before.
    pub fn push_run(&mut self, first: i64, len: usize, step: i64) {
        if len == 0 {
            return;
        }
        self.push(first);
        let mut left = len - 1;
        let mut v = first;
        // Within a page and a block, every delta of the run is the same: filled at once.
        while left > 0 {
            if self.rows == 0 {
                v = v.wrapping_add(step);
                self.push(v);
                left -= 1;
                continue;
            }
            let n = left.min(self.page_rows - self.rows).min(BLOCK - self.held);
            let next = v.wrapping_add(step);
            let delta = if self.wrap32 {
                i64::from((next as i32).wrapping_sub(v as i32))
            } else {
                next.wrapping_sub(v)
            };
            self.deltas[self.held..self.held + n].fill(delta);
            // The values of a run go one way: their extremes are its ends.
            let end = v.wrapping_add(step.wrapping_mul(n as i64));
            self.min = self.min.min(next).min(end);
            self.max = self.max.max(next).max(end);
            (v, self.last) = (end, end);
            self.held += n;
            self.rows += n;
            left -= n;
            if self.held == BLOCK {
                self.flush_block();
            }
            if self.rows == self.page_rows {
                self.finish_page();
            }
        }
    }

    /// The pages, the last one finished.
    pub fn finish(mut self) -> Vec<DeltaPage> {
        if self.rows > 0 {
            self.finish_page();
        }
        self.done
    }

    /// The held deltas as a block.
    fn flush_block(&mut self) {
        let deltas = &self.deltas[..self.held];
        let Some(&min) = deltas.iter().min() else { return };
        put_uleb(&mut self.blocks, zigzag(min));
        // Each delta less the smallest, in the column's width.
        let wrap32 = self.wrap32;
        let adjusted = |d: i64| {
            if wrap32 {
                u64::from((d as i32).wrapping_sub(min as i32) as u32)
            } else {
                d.wrapping_sub(min) as u64
            }
        };
        let mut mini = [[0u64; MINIBLOCK]; MINIBLOCKS];
        let mut widths = [0u8; MINIBLOCKS];
        for (m, chunk) in deltas.chunks(MINIBLOCK).enumerate() {
            let mut any = 0;
            for (slot, &d) in mini[m].iter_mut().zip(chunk) {
                *slot = adjusted(d);
                any |= *slot;
            }
            widths[m] = (64 - any.leading_zeros()) as u8;
        }
        self.blocks.extend_from_slice(&widths);
        let used = deltas.len().div_ceil(MINIBLOCK);
        for (values, &width) in mini.iter().zip(&widths).take(used) {
            pack(values, u32::from(width), &mut self.blocks);
        }
        self.held = 0;
    }

    fn finish_page(&mut self) {
        if self.held > 0 {
            self.flush_block();
        }
        let mut bytes = Vec::with_capacity(self.blocks.len() + 24);
        put_uleb(&mut bytes, BLOCK as u64);
        put_uleb(&mut bytes, MINIBLOCKS as u64);
        put_uleb(&mut bytes, self.rows as u64);
        put_uleb(&mut bytes, zigzag(self.first));
        bytes.append(&mut self.blocks);
        self.done.push(DeltaPage {
            bytes,
            rows: self.rows,
            min: self.min,
            max: self.max,
        });
        self.rows = 0;
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `values` (each below `2^width`) bit-packed at `width` bits, least significant bit first:
/// `4 × width` bytes.
fn pack(values: &[u64; MINIBLOCK], width: u32, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits = 0;
    for &v in values {
        acc |= u128::from(v) << bits;
        bits += width;
        if bits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    // 32 × width bits: a whole number of bytes.
    out.extend_from_slice(&(acc as u64).to_le_bytes()[..(bits / 8) as usize]);
}

/// The chunk of `pages` (from [`DeltaPages`]) of the required integer column `descr`, its
/// pages compressed with zstd at `level`.
pub fn encode_chunk(
    descr: &ColumnDescPtr,
    pages: Vec<DeltaPage>,
    level: ZstdLevel,
) -> Result<(super::chunk::Chunk, ColumnCloseResult)> {
    let entries = |a: i64, b: i64| match descr.physical_type() {
        PhysicalType::INT32 => Ok(Entries::Int32(vec![a as i32, b as i32])),
        PhysicalType::INT64 => Ok(Entries::Int64(vec![a, b])),
        other => Err(ParquetError::General(format!(
            "{}: delta encoding of a {other} column",
            descr.name()
        ))),
    };
    if descr.max_def_level() > 0 || descr.max_rep_level() > 0 {
        return Err(ParquetError::General(format!(
            "{}: delta pages are written for required columns only",
            descr.name()
        )));
    }
    let mut z = super::dictionary::Zstd::take()?;
    let mut column_index = ColumnIndexBuilder::new(descr.physical_type());
    let mut written = Vec::with_capacity(pages.len());
    let mut page_bounds = Vec::with_capacity(pages.len());
    for page in &pages {
        let bounds = entries(page.min, page.max)?;
        column_index.append(false, bounds.bound(0, false).0, bounds.bound(1, true).0, 0, None);
        page_bounds.push((page.min, page.max));
        let buf = z.compress(&page.bytes, level.compression_level())?;
        let data = chunk::data_page(buf, page.rows, Encoding::DELTA_BINARY_PACKED);
        written.push((data, page.bytes.len()));
    }
    let lowest = pages.iter().map(|p| p.min).min();
    let highest = pages.iter().map(|p| p.max).max();
    let statistics = match lowest.zip(highest) {
        Some((lo, hi)) => entries(lo, hi)?.statistics(Some((0, 1)), 0),
        None => entries(0, 0)?.statistics(None, 0),
    };
    let info = chunk::ChunkInfo {
        encodings: vec![Encoding::DELTA_BINARY_PACKED, Encoding::RLE],
        statistics,
        column_index,
        rows: pages.iter().map(|p| p.rows as u64).sum(),
    };
    chunk::write_chunk(descr, level, written, info, &page_bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Parquet specification: 1, 2, 3, 4, 5 (deltas 1: min delta 1, all
    /// widths 0), and 7, 5, 3, 1, 2, 3, 4, 5 (deltas -2 -2 -2 1 1 1 1: min delta -2, less it
    /// 0 0 0 3 3 3 3: width 2), checked byte by byte.
    #[test]
    fn the_specification_examples() {
        let encode = |values: &[i64]| {
            let mut p = DeltaPages::new(true, 1000);
            values.iter().for_each(|&v| p.push(v));
            let pages = p.finish();
            assert_eq!(pages.len(), 1);
            pages.into_iter().next().unwrap().bytes
        };
        // header 128, 4, 5 values, first 1 (zigzag 2); block: min delta 1 (zigzag 2), widths
        // 0 0 0 0, no miniblock bytes.
        assert_eq!(encode(&[1, 2, 3, 4, 5]), [0x80, 0x01, 4, 5, 2, 2, 0, 0, 0, 0]);
        // first 7 (zigzag 14); min delta -2 (zigzag 3); widths 2 0 0 0; one miniblock of 32
        // values at 2 bits = 8 bytes: 0 0 0 3 3 3 3 then zeros → bits 00 00 00 11 | 11 11 11 00 …
        assert_eq!(
            encode(&[7, 5, 3, 1, 2, 3, 4, 5]),
            [0x80, 0x01, 4, 8, 14, 3, 2, 0, 0, 0, 0b1100_0000, 0b0011_1111, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn pages_split_at_page_rows_and_keep_their_bounds() {
        let mut p = DeltaPages::new(false, 300);
        p.push_run(10, 500, -1);
        let pages = p.finish();
        assert_eq!(pages.iter().map(|p| p.rows).collect::<Vec<_>>(), [300, 200]);
        assert_eq!((pages[0].min, pages[0].max), (-289, 10));
        assert_eq!((pages[1].min, pages[1].max), (-489, -290));
    }

    /// Runs (filled a block at a time) encode as their values pushed one by one, across
    /// block and page ends, in both widths.
    #[test]
    fn runs_encode_as_their_values_one_by_one() {
        for (page_rows, wrap32) in [(1, true), (7, true), (128, false), (300, true), (1000, false)] {
            let mut runs = DeltaPages::new(wrap32, page_rows);
            let mut ones = DeltaPages::new(wrap32, page_rows);
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            for _ in 0..300 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let first = (state % 5000) as i64 - 2500;
                let len = ((state >> 16) % 300) as usize;
                let step = [0, 1, -1, 3][((state >> 32) % 4) as usize];
                runs.push_run(first, len, step);
                (0..len as i64).for_each(|i| ones.push(first + step * i));
            }
            assert_eq!(runs.finish(), ones.finish(), "page_rows {page_rows}");
        }
    }

    #[test]
    fn deltas_wrap_in_32_bits() {
        // i32::MIN - i32::MAX wraps to 1 in 32 bits: a width of 0, not 33 bits.
        let mut p = DeltaPages::new(true, 10);
        p.push(i64::from(i32::MAX));
        p.push(i64::from(i32::MIN));
        let bytes = &p.finish()[0].bytes;
        // header: 128, 4, 2 values, zigzag(i32::MAX) = 2^32 - 2 (5 bytes); block: min 1
        // (zigzag 2), widths 0.
        assert_eq!(&bytes[..4], [0x80, 0x01, 4, 2]);
        assert_eq!(&bytes[bytes.len() - 5..], [2, 0, 0, 0, 0]);
    }
}
