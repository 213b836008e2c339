//! Parquet by byte ranges: footer first (`ParquetMetaDataPushDecoder`), then only the column
//! chunks the cube needs (`ParquetPushDecoder` with a `ProjectionMask`).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::push_decoder::{ParquetPushDecoder, ParquetPushDecoderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataPushDecoder};
use parquet::DecodeResult;

use super::{IngestError, Poll};
use crate::cube::{ColumnMap, CubeBuilder};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 64 * 1024;

enum Stage {
    Footer(ParquetMetaDataPushDecoder),
    Data(ParquetPushDecoder),
    Done,
}

/// The Parquet half of an [`Ingest`](super::Ingest).
pub struct ParquetSource {
    file: String,
    stage: Stage,
    bytes_read: u64,
    columns: Option<ColumnMap>,
    metadata: Option<Arc<ParquetMetaData>>,
    first_step: Option<i64>,
    file_len: u64,
}

/// Puts a parquet error into the user's words where we can recognise it.
fn explain(file: &str, e: ParquetError) -> IngestError {
    let raw = e.to_string();
    let message = if raw.contains("Invalid Parquet file. Corrupt footer")
        || raw.contains("magic")
    {
        format!("the file does not end with the Parquet footer (it is truncated or not Parquet) [{raw}]")
    } else if raw.contains("EOF") || raw.contains("eof") || raw.contains("out of range") {
        format!("the file is truncated or damaged [{raw}]")
    } else {
        format!("the file is damaged [{raw}]")
    };
    IngestError::Parquet {
        file: file.to_string(),
        message,
    }
}

impl ParquetSource {
    pub fn new(file: &str, file_len: u64) -> Result<ParquetSource, IngestError> {
        let footer = ParquetMetaDataPushDecoder::try_new(file_len)
            .map_err(|e| explain(file, e))?
            .with_page_index_policy(PageIndexPolicy::Skip);
        Ok(ParquetSource {
            file: file.to_string(),
            stage: Stage::Footer(footer),
            bytes_read: 0,
            columns: None,
            metadata: None,
            first_step: None,
            file_len,
        })
    }

    /// Read the row groups whose statistics say they can hold generation step `step` first.
    pub fn with_first_step(mut self, step: Option<i64>) -> ParquetSource {
        self.first_step = step;
        self
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    pub fn columns(&self) -> Option<&ColumnMap> {
        self.columns.as_ref()
    }

    /// The file's metadata, once the footer is read.
    pub fn metadata(&self) -> Option<&Arc<ParquetMetaData>> {
        self.metadata.as_ref()
    }

    pub(super) fn poll(&mut self, builder: &mut CubeBuilder) -> Result<Poll, IngestError> {
        let file = self.file.clone();
        let err = |e| explain(&file, e);
        loop {
            match &mut self.stage {
                Stage::Footer(footer) => match footer.try_decode().map_err(err)? {
                    DecodeResult::NeedsData(ranges) => return Ok(Poll::NeedsData(ranges)),
                    DecodeResult::Data(metadata) => {
                        self.stage = Stage::Data(self.start_data(Arc::new(metadata), builder)?);
                    }
                    DecodeResult::Finished => {
                        return Err(IngestError::Parquet {
                            file,
                            message: "the footer holds no metadata".into(),
                        })
                    }
                },
                Stage::Data(decoder) => match decoder.try_decode().map_err(err)? {
                    DecodeResult::NeedsData(ranges) => return Ok(Poll::NeedsData(ranges)),
                    DecodeResult::Data(batch) => {
                        builder.push_batch(&batch)?;
                        return Ok(Poll::Decoded);
                    }
                    DecodeResult::Finished => {
                        self.stage = Stage::Done;
                        return Ok(Poll::Finished);
                    }
                },
                Stage::Done => return Ok(Poll::Finished),
            }
        }
    }

    fn start_data(
        &mut self,
        metadata: Arc<ParquetMetaData>,
        builder: &mut CubeBuilder,
    ) -> Result<ParquetPushDecoder, IngestError> {
        let err = |e| explain(&self.file, e);
        // Damaged metadata can give column chunks negative or out-of-file byte ranges, which
        // the parquet crate asserts on (found by `cargo xtask fuzz`): say so instead.
        for (g, group) in metadata.row_groups().iter().enumerate() {
            for column in group.columns() {
                let start = column.dictionary_page_offset().unwrap_or_else(|| column.data_page_offset());
                let len = column.compressed_size();
                let end = u64::try_from(start).ok().zip(u64::try_from(len).ok()).and_then(|(s, l)| s.checked_add(l));
                if end.is_none_or(|end| end > self.file_len) {
                    return Err(IngestError::Parquet {
                        file: self.file.clone(),
                        message: format!(
                            "the file is damaged: column `{}` of row group {g} points at bytes {start}..{start}+{len} of a {}-byte file",
                            column.column_path(),
                            self.file_len
                        ),
                    });
                }
            }
        }
        self.metadata = Some(metadata.clone());
        let decoder = ParquetPushDecoderBuilder::try_new_decoder(metadata.clone()).map_err(err)?;
        let schema = decoder.schema().clone();
        let columns = builder.begin_source(&self.file, &schema)?;
        let wanted = columns.names();
        let roots: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| wanted.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(decoder.parquet_schema(), roots);
        builder.expect_rows(metadata.file_metadata().num_rows().max(0) as u64);
        let order = match (&columns.step, self.first_step) {
            (Some(step_column), Some(step)) => row_groups_first(&metadata, &schema, step_column, step),
            _ => None,
        };
        self.columns = Some(columns);
        let decoder = match order {
            Some(order) => decoder.with_row_groups(order),
            None => decoder,
        };
        decoder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(err)
    }

    pub(super) fn push(
        &mut self,
        ranges: Vec<Range<u64>>,
        data: Vec<Bytes>,
        _builder: &mut CubeBuilder,
    ) -> Result<(), IngestError> {
        self.bytes_read += data.iter().map(|d| d.len() as u64).sum::<u64>();
        let file = self.file.clone();
        let err = |e| explain(&file, e);
        match &mut self.stage {
            Stage::Footer(f) => f.push_ranges(ranges, data).map_err(err),
            Stage::Data(d) => d.push_ranges(ranges, data).map_err(err),
            Stage::Done => Ok(()),
        }
    }
}

/// Row group order that puts first the groups whose statistics for `step_column` allow `step`
/// (the others keep their order after them), or `None` when statistics are missing or the order
/// would not change.
fn row_groups_first(
    metadata: &ParquetMetaData,
    schema: &arrow_schema::Schema,
    step_column: &str,
    step: i64,
) -> Option<Vec<usize>> {
    use arrow_array::cast::AsArray;
    use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
    let converter = StatisticsConverter::try_new(step_column, schema, metadata.file_metadata().schema_descr()).ok()?;
    let groups = metadata.row_groups();
    let as_i64 = |a: arrow_array::ArrayRef| -> Option<Vec<Option<i64>>> {
        let a = crate::cube::numbers_as_i64(&a).ok()?;
        Some(a.as_primitive::<arrow_array::types::Int64Type>().iter().collect())
    };
    let mins = as_i64(converter.row_group_mins(groups).ok()?)?;
    let maxes = as_i64(converter.row_group_maxes(groups).ok()?)?;
    let holds = |i: usize| match (mins.get(i).copied().flatten(), maxes.get(i).copied().flatten()) {
        (Some(lo), Some(hi)) => lo <= step && step <= hi,
        _ => true,
    };
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..groups.len()).partition(|&i| holds(i));
    let order: Vec<usize> = first.into_iter().chain(rest).collect();
    (order.iter().enumerate().any(|(k, &i)| k != i)).then_some(order)
}

#[cfg(test)]
mod tests {
    use super::super::{drive_with, Ingest};
    use arrow_array::{Float32Array, Int64Array, RecordBatch};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    /// Three row groups, one per step (0, 1, 2): 2 layers × 3 positions each; the value is
    /// `100 * step + 10 * layer + position`.
    fn three_steps() -> Bytes {
        let mut out = Vec::new();
        let batch = |step: i64| {
            let (mut s, mut l, mut p, mut v) = (vec![], vec![], vec![], vec![]);
            for layer in 0..2i64 {
                for pos in 0..3i64 {
                    s.push(step);
                    l.push(layer);
                    p.push(pos);
                    v.push((100 * step + 10 * layer + pos) as f32);
                }
            }
            RecordBatch::try_from_iter([
                ("generation_step", Arc::new(Int64Array::from(s)) as _),
                ("layer", Arc::new(Int64Array::from(l)) as _),
                ("token_position", Arc::new(Int64Array::from(p)) as _),
                ("l2_distance", Arc::new(Float32Array::from(v)) as _),
            ])
            .unwrap()
        };
        let first = batch(0);
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(6)).build();
        let mut w = ArrowWriter::try_new(&mut out, first.schema(), Some(props)).unwrap();
        for step in 0..3 {
            w.write(&batch(step)).unwrap();
            w.flush().unwrap();
        }
        w.close().unwrap();
        Bytes::from(out)
    }

    /// Reads `bytes` asking for `first_step` first; returns the steps of the first snapshot
    /// taken once that step has been passed (or the file ended), and the final cube.
    fn read(bytes: &Bytes, first_step: Option<i64>) -> (Vec<i64>, crate::cube::Cube) {
        let mut ingest = Ingest::new("t.parquet", bytes.len() as u64).with_first_step(first_step);
        let mut first_view: Option<Vec<i64>> = None;
        drive_with(
            &mut ingest,
            |r| Ok(bytes.slice(r.start as usize..r.end as usize)),
            |i| {
                if first_view.is_none() && first_step.is_some_and(|s| i.builder().step_passed(s)) {
                    first_view = Some(i.builder().snapshot().unwrap().steps);
                }
                true
            },
        )
        .unwrap();
        let cube = ingest.finish().unwrap();
        (first_view.unwrap_or_else(|| cube.steps.clone()), cube)
    }

    #[test]
    fn row_groups_of_the_first_step_are_read_first() {
        let bytes = three_steps();
        let (first, cube) = read(&bytes, Some(2));
        // Step 2's group is read first; the snapshot is taken after the batch in which the
        // next group's step begins (here a whole group), before the file is read whole.
        assert_eq!(first, vec![0, 2]);
        assert_eq!(cube.steps, vec![0, 1, 2]);
        let (first, _) = read(&bytes, Some(1));
        // Step 1's group first, then step 0's (where step 1 is passed); step 2's not yet.
        assert_eq!(first, vec![0, 1]);
        // Whatever the order, every value lands in its cell: 100 * step + 10 * layer + position.
        for (si, step) in [0i64, 1, 2].into_iter().enumerate() {
            for layer in 0..2usize {
                let at = cube.cell(0, si, 0, layer);
                for pos in 0..3usize {
                    let want = (100 * step + 10 * layer as i64 + pos as i64) as f32;
                    assert_eq!(cube.value(0, at, pos), Some(want));
                }
            }
        }
    }
}

#[cfg(test)]
mod damaged {
    /// Found by `cargo xtask fuzz`: a footer whose column chunk has a negative offset made the
    /// parquet crate panic ("column start and length should not be negative").
    #[test]
    fn negative_column_offset_is_an_error_not_a_panic() {
        // The fuzz target wraps its input in the Parquet magic, as here.
        let data = include_bytes!("../../tests/fixtures/fuzz/parquet_negative_column_offset.bin");
        let bytes = [b"PAR1".as_slice(), data, b"PAR1"].concat();
        let err = crate::ingest::read_bytes("f.parquet", &bytes).unwrap_err().to_string();
        assert!(err.starts_with("f.parquet: "), "{err}");
    }
}
