//! CSV and JSON, fed chunk by chunk into arrow-rs's streaming decoders (`arrow-csv`,
//! `arrow-json`). The schema is decided from the first chunk: known columns get fixed types,
//! other columns are metrics when their sampled values are all numbers.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use bytes::Bytes;

use super::{Format, IngestError, Poll, TEXT_CHUNK_BYTES};
use crate::cube::{ColumnMap, CubeBuilder};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 64 * 1024;
/// Records sampled to decide the type of unknown columns.
const SAMPLE_RECORDS: usize = 1000;

const TEXT_COLUMNS: [&str; 4] = ["token_masked", "variant", "prompt_name", "config_prompt"];
const INT_COLUMNS: [&str; 3] = ["generation_step", "layer", "token_position"];
const METRIC_COLUMNS: [&str; 2] = ["l2_distance", "cosine_distance"];

enum Decoder {
    Csv(arrow_csv::reader::Decoder),
    Json(arrow_json::reader::Decoder),
}

impl Decoder {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        match self {
            Decoder::Csv(d) => d.decode(buf),
            Decoder::Json(d) => d.decode(buf),
        }
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Decoder::Csv(d) => d.flush(),
            Decoder::Json(d) => d.flush(),
        }
    }
}

/// The CSV/JSON half of an [`Ingest`](super::Ingest).
pub struct TextSource {
    file: String,
    file_len: u64,
    format: Format,
    /// Next byte to ask for.
    next: u64,
    bytes_read: u64,
    decoder: Option<Decoder>,
    columns: Option<ColumnMap>,
    finished: bool,
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

fn csv_schema(file: &str, sample: &[u8], delim: u8, at_eof: bool) -> Result<SchemaRef, IngestError> {
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
    for r in &records {
        for (i, v) in r.iter().enumerate().take(headers.len()) {
            if !v.is_empty() {
                seen[i] = true;
                numeric[i] &= is_number(v);
            }
        }
    }
    Ok(schema_of(
        headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let t = fixed_type(h).unwrap_or(if numeric[i] && seen[i] {
                    DataType::Float64
                } else {
                    DataType::Utf8
                });
                (h.clone(), t)
            })
            .collect(),
    ))
}

/// The schema of a JSON records array or JSON Lines, from the first object.
fn json_schema(file: &str, sample: &[u8], at_eof: bool) -> Result<Option<SchemaRef>, IngestError> {
    let err = |message: String| IngestError::Json {
        file: file.to_string(),
        message,
    };
    let text = sample.strip_prefix(b"\xef\xbb\xbf").unwrap_or(sample);
    let start = text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len());
    let mut rest = &text[start..];
    if rest.first() == Some(&b'[') {
        rest = &rest[1..];
        let skip = rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(rest.len());
        rest = &rest[skip..];
        if rest.first() == Some(&b']') {
            return Err(err("the JSON array is empty: the file holds no data rows".into()));
        }
    }
    let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<serde_json::Value>();
    let first = match stream.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) if e.is_eof() && !at_eof => return Ok(None),
        Some(Err(e)) => return Err(err(format!("invalid JSON in the first row: {e}"))),
        None if at_eof => return Err(err("the file holds no JSON rows".into())),
        None => return Ok(None),
    };
    let serde_json::Value::Object(obj) = first else {
        return Err(err(format!(
            "expected an array of row objects (pandas `orient=\"records\"`) or JSON Lines, but the first item is {}",
            describe(&first)
        )));
    };
    if !obj.is_empty() && obj.values().all(|v| v.is_object() || v.is_array()) {
        return Err(err(
            "expected an array of row objects (pandas `orient=\"records\"`) or JSON Lines, but this looks like a table stored by column (pandas `orient=\"columns\"`); write it with `df.to_json(path, orient=\"records\")`".into(),
        ));
    }
    Ok(Some(schema_of(
        obj.iter()
            .filter_map(|(k, v)| {
                let t = fixed_type(k).or(match v {
                    serde_json::Value::Number(_) => Some(DataType::Float64),
                    serde_json::Value::String(_) | serde_json::Value::Null => Some(DataType::Utf8),
                    _ => None,
                })?;
                Some((k.clone(), t))
            })
            .collect(),
    )))
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
            file: file.to_string(),
            file_len,
            format,
            next: 0,
            bytes_read: 0,
            decoder: None,
            columns: None,
            finished: false,
        }
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    pub fn columns(&self) -> Option<&ColumnMap> {
        self.columns.as_ref()
    }

    fn error(&self, e: ArrowError) -> IngestError {
        let message = match e {
            ArrowError::CsvError(m) | ArrowError::JsonError(m) | ArrowError::ParseError(m) => m,
            other => other.to_string(),
        };
        let message = format!("{message} (in the bytes before offset {})", self.bytes_read);
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

    pub(super) fn poll(&mut self, builder: &mut CubeBuilder) -> Result<Poll, IngestError> {
        if self.finished {
            return Ok(Poll::Finished);
        }
        if self.next < self.file_len {
            let end = (self.next + TEXT_CHUNK_BYTES).min(self.file_len);
            return Ok(Poll::NeedsData(vec![self.next..end]));
        }
        // End of file: let the decoder finish its last record, then flush.
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
        if let Some(Decoder::Csv(d)) = &mut self.decoder {
            d.decode(&[]).map_err(|e| self.error_owned(e))?;
        }
        self.flush(builder)?;
        self.finished = true;
        Ok(Poll::Finished)
    }

    fn error_owned(&self, e: ArrowError) -> IngestError {
        self.error(e)
    }

    fn flush(&mut self, builder: &mut CubeBuilder) -> Result<(), IngestError> {
        let d = self.decoder.as_mut().expect("decoder exists");
        let batch = d.flush();
        match batch {
            Ok(Some(b)) => builder.push_batch(&b)?,
            Ok(None) => {}
            Err(e) => return Err(self.error(e)),
        }
        Ok(())
    }

    fn start(&mut self, chunk: &[u8], builder: &mut CubeBuilder) -> Result<bool, IngestError> {
        let at_eof = self.next >= self.file_len;
        let decoder = match self.format {
            Format::Json => {
                let Some(schema) = json_schema(&self.file, chunk, at_eof)? else {
                    return Ok(false);
                };
                self.columns = Some(builder.begin_source(&self.file, &schema)?);
                let d = arrow_json::ReaderBuilder::new(schema)
                    .with_batch_size(BATCH_ROWS)
                    .with_flatten(true)
                    .with_coerce_primitive(true)
                    .build_decoder()
                    .map_err(|e| self.error(e))?;
                Decoder::Json(d)
            }
            _ => {
                let delim = delimiter(chunk);
                let schema = csv_schema(&self.file, chunk, delim, at_eof)?;
                self.columns = Some(builder.begin_source(&self.file, &schema)?);
                let d = arrow_csv::ReaderBuilder::new(schema)
                    .with_header(true)
                    .with_delimiter(delim)
                    .with_batch_size(BATCH_ROWS)
                    .build_decoder();
                Decoder::Csv(d)
            }
        };
        self.decoder = Some(decoder);
        Ok(true)
    }

    pub(super) fn push(
        &mut self,
        _ranges: Vec<Range<u64>>,
        data: Vec<Bytes>,
        builder: &mut CubeBuilder,
    ) -> Result<(), IngestError> {
        for chunk in data {
            self.next += chunk.len() as u64;
            let mut buf: &[u8] = &chunk;
            if self.decoder.is_none() {
                // A UTF-8 byte order mark would become part of the first column's name.
                buf = buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(buf);
                if !self.start(buf, builder)? {
                    return Err(IngestError::Json {
                        file: self.file.clone(),
                        message: format!(
                            "the first row is longer than {} MB",
                            TEXT_CHUNK_BYTES >> 20
                        ),
                    });
                }
            }
            while !buf.is_empty() {
                let d = self.decoder.as_mut().expect("decoder exists");
                let n = match d.decode(buf) {
                    Ok(n) => n,
                    Err(e) => return Err(self.error(e)),
                };
                self.bytes_read += n as u64;
                buf = &buf[n..];
                if !buf.is_empty() {
                    // The batch is full.
                    self.flush(builder)?;
                }
            }
        }
        Ok(())
    }
}
