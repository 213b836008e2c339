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
        })
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
                    DecodeResult::Data(batch) => builder.push_batch(&batch)?,
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
        self.metadata = Some(metadata.clone());
        let decoder = ParquetPushDecoderBuilder::try_new_decoder(metadata).map_err(err)?;
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
        self.columns = Some(columns);
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
