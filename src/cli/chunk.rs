//! A column chunk assembled from pages this crate encoded itself (the dictionary chunks of
//! [`super::dictionary`], the delta-encoded positions of [`super::delta`]): the pages written
//! one after another into memory, and the chunk's metadata, page index and close result as
//! arrow-rs's column writer gives them.

use bytes::Bytes;
use parquet::basic::{BoundaryOrder, Compression, Encoding, EncodingMask, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;
use parquet::file::metadata::{ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder, PageEncodingStats};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// What a chunk's metadata says beyond its pages.
pub struct ChunkInfo {
    /// Every encoding its pages use (values and levels).
    pub encodings: Vec<Encoding>,
    pub statistics: Statistics,
    /// The column index, a page appended per data page; its boundary order is set from the
    /// pages' bounds by [`write_chunk`].
    pub column_index: ColumnIndexBuilder,
    pub rows: u64,
}

/// Room for a page's header beside its bytes, when the chunk's buffer is sized up front.
const PAGE_HEADER_BYTES: usize = 64;

/// The chunk of `pages` (a dictionary page first, if any; each `(page, uncompressed size)`)
/// in memory, with its close result; `page_bounds` are the lowest and highest value of each
/// data page with values, in an order that orders the values, for the column index's boundary
/// order. The buffer is sized for all pages at once: grown page by
/// page, the seed-scale `l2_distance` chunk (9 MB) was copied three times over, 3 ms of its
/// column's write.
pub fn write_chunk(
    descr: &ColumnDescPtr,
    level: ZstdLevel,
    pages: Vec<(Page, usize)>,
    info: ChunkInfo,
    page_bounds: &[(impl PartialOrd, impl PartialOrd)],
) -> Result<(Bytes, ColumnCloseResult)> {
    let capacity = pages.iter().map(|(p, _)| p.buffer().len() + PAGE_HEADER_BYTES).sum();
    let mut sink = TrackedWrite::new(Vec::with_capacity(capacity));
    let mut writer = SerializedPageWriter::new(&mut sink);
    let (mut compressed, mut uncompressed, mut bytes_written) = (0i64, 0i64, 0u64);
    let mut offset_index = OffsetIndexBuilder::new();
    let (mut dictionary_offset, mut data_offset) = (None, None);
    let mut page_stats: Vec<PageEncodingStats> = Vec::new();
    for (page, plain_len) in pages {
        let dictionary = matches!(page, Page::DictionaryPage { .. });
        let num_values = page.num_values();
        let (page_type, encoding) = (page.page_type(), page.encoding());
        let spec = writer.write_page(CompressedPage::new(page, plain_len))?;
        compressed += spec.compressed_size as i64;
        uncompressed += spec.uncompressed_size as i64;
        bytes_written += spec.bytes_written;
        if dictionary {
            dictionary_offset = Some(spec.offset as i64);
        } else {
            data_offset.get_or_insert(spec.offset as i64);
            offset_index.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
            offset_index.append_row_count(i64::from(num_values));
        }
        match page_stats.iter_mut().find(|s| s.page_type == page_type && s.encoding == encoding) {
            Some(s) => s.count += 1,
            None => page_stats.push(PageEncodingStats { page_type, encoding, count: 1 }),
        }
    }
    writer.close()?;
    let mut column_index = info.column_index;
    column_index.set_boundary_order(boundary_order(page_bounds));
    let metadata = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(Compression::ZSTD(level))
        .set_encodings_mask(EncodingMask::new_from_encodings(info.encodings.iter()))
        .set_page_encoding_stats(page_stats)
        .set_total_compressed_size(compressed)
        .set_total_uncompressed_size(uncompressed)
        .set_num_values(info.rows as i64)
        .set_data_page_offset(data_offset.or(dictionary_offset).unwrap_or(0))
        .set_dictionary_page_offset(dictionary_offset)
        .set_statistics(info.statistics)
        .build()?;
    let close = ColumnCloseResult {
        bytes_written,
        rows_written: info.rows,
        metadata,
        bloom_filter: None,
        column_index: column_index
            .valid()
            .then(|| column_index.build())
            .transpose()?,
        offset_index: Some(offset_index.build()),
    };
    Ok((Bytes::from(sink.into_inner()?), close))
}

/// The column index's boundary order of pages whose lowest and highest values are `bounds`
/// (pages without values left out).
fn boundary_order<A: PartialOrd, B: PartialOrd>(bounds: &[(A, B)]) -> BoundaryOrder {
    if bounds.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1) {
        BoundaryOrder::ASCENDING
    } else if bounds.windows(2).all(|w| w[0].0 >= w[1].0 && w[0].1 >= w[1].1) {
        BoundaryOrder::DESCENDING
    } else {
        BoundaryOrder::UNORDERED
    }
}

/// A data page (V1) of `rows` rows whose values are `buf` (compressed), in `encoding`.
pub fn data_page(buf: Bytes, rows: usize, encoding: Encoding) -> Page {
    Page::DataPage {
        buf,
        num_values: rows as u32,
        encoding,
        def_level_encoding: Encoding::RLE,
        rep_level_encoding: Encoding::RLE,
        statistics: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::basic::PageType;

    #[test]
    fn boundary_orders() {
        assert_eq!(boundary_order(&[(1, 2), (2, 5), (2, 6)]), BoundaryOrder::ASCENDING);
        assert_eq!(boundary_order(&[(3, 9), (1, 9), (0, 2)]), BoundaryOrder::DESCENDING);
        assert_eq!(boundary_order(&[(1, 2), (0, 5)]), BoundaryOrder::UNORDERED);
        assert_eq!(boundary_order::<i32, i32>(&[]), BoundaryOrder::ASCENDING);
    }

    #[test]
    fn page_type_of_data_page() {
        let p = data_page(Bytes::from_static(b"x"), 3, Encoding::DELTA_BINARY_PACKED);
        assert_eq!(p.page_type(), PageType::DATA_PAGE);
        assert_eq!(p.num_values(), 3);
    }
}
