//! CSV and JSON written the way pandas writes them, from Arrow record batches.
//!
//! - CSV (`DataFrame.to_csv(index=False)`): a header row; integers as digits; `float32` in the
//!   shortest form that reads back to the same `float32`, with `.0` on whole numbers; no value
//!   as an empty field; fields quoted only when they hold a comma, quote or line break.
//! - JSON (`DataFrame.to_json(orient="records")`): one array of row objects without spaces;
//!   floats widened to `f64` and written with 10 decimals, trailing zeros dropped (so `0.1234`
//!   as `float32` is `0.1234000027`); no value as `null`; strings escaped ASCII-only with `\/`.
//!   JSON Lines (`lines=True`) writes one object per line.

use std::io::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use super::CliError;

/// Write one value of a column as text into `out`; returns false when there is no value.
fn cell_text(col: &ArrayRef, row: usize, json: bool, out: &mut String) -> bool {
    use std::fmt::Write as _;
    if col.is_null(row) {
        return false;
    }
    macro_rules! int {
        ($t:ty) => {{
            let _ = write!(out, "{}", col.as_primitive::<$t>().value(row));
            true
        }};
    }
    match col.data_type() {
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float32 => {
            let v = col.as_primitive::<Float32Type>().value(row);
            if json {
                float_json(v as f64, out)
            } else {
                float_csv(v, out)
            }
        }
        DataType::Float64 => {
            let v = col.as_primitive::<Float64Type>().value(row);
            if json {
                float_json(v, out)
            } else if v.is_finite() {
                let _ = write!(out, "{v:?}");
                true
            } else {
                false
            }
        }
        DataType::Utf8 => {
            out.push_str(col.as_string::<i32>().value(row));
            true
        }
        DataType::LargeUtf8 => {
            out.push_str(col.as_string::<i64>().value(row));
            true
        }
        _ => {
            let s = arrow_cast::display::ArrayFormatter::try_new(col.as_ref(), &Default::default())
                .map(|f| f.value(row).to_string());
            match s {
                Ok(s) => {
                    out.push_str(&s);
                    true
                }
                Err(_) => false,
            }
        }
    }
}

/// The columns of `batch`, dictionaries decoded to plain strings (once per batch).
fn prepare(batch: &RecordBatch) -> Vec<ArrayRef> {
    batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Dictionary(_, _) => arrow_cast::cast(c, &DataType::Utf8).unwrap_or_else(|_| c.clone()),
            _ => c.clone(),
        })
        .collect()
}

/// `float32` as pandas writes it to CSV: shortest round-trip form, `.0` on whole numbers.
fn float_csv(v: f32, out: &mut String) -> bool {
    use std::fmt::Write as _;
    if !v.is_finite() {
        return false;
    }
    let start = out.len();
    let _ = write!(out, "{v}");
    if !out[start..].contains(['.', 'e', 'E']) {
        out.push_str(".0");
    }
    true
}

/// A float as pandas (ujson, `double_precision=10`) writes it to JSON.
fn float_json(v: f64, out: &mut String) -> bool {
    use std::fmt::Write as _;
    if !v.is_finite() {
        return false;
    }
    let start = out.len();
    let _ = write!(out, "{v:.10}");
    let trimmed = out[start..].trim_end_matches('0').len();
    out.truncate(start + trimmed);
    if out.ends_with('.') {
        out.push('0');
    }
    true
}

/// A JSON string as pandas writes it: ASCII only, `/` escaped.
fn json_string(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A pandas-style CSV writer over record batches (header from the first batch).
pub struct CsvWriter<W: Write> {
    out: csv::Writer<W>,
    path: String,
    header_written: bool,
    field: String,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W, path: &str) -> CsvWriter<W> {
        CsvWriter {
            out: csv::WriterBuilder::new().from_writer(out),
            path: path.to_string(),
            header_written: false,
            field: String::new(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> CliError {
        CliError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Append the rows of `batch`.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), CliError> {
        if !self.header_written {
            let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
            self.out.write_record(&names).map_err(|e| self.err(e))?;
            self.header_written = true;
        }
        let columns = prepare(batch);
        for row in 0..batch.num_rows() {
            for col in &columns {
                self.field.clear();
                cell_text(col, row, false, &mut self.field);
                self.out.write_field(&self.field).map_err(|e| CliError::Io {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?;
            }
            self.out.write_record(None::<&[u8]>).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Flush and hand back the writer.
    pub fn finish(self) -> Result<W, CliError> {
        let path = self.path.clone();
        self.out.into_inner().map_err(|e| CliError::Io {
            path,
            message: e.to_string(),
        })
    }
}

/// A pandas-style JSON writer: `orient="records"` array, or JSON Lines.
pub struct JsonWriter<W: Write> {
    out: W,
    path: String,
    lines: bool,
    rows: u64,
    buf: String,
}

impl<W: Write> JsonWriter<W> {
    pub fn new(out: W, path: &str, lines: bool) -> JsonWriter<W> {
        JsonWriter {
            out,
            path: path.to_string(),
            lines,
            rows: 0,
            buf: String::new(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> CliError {
        CliError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Append the rows of `batch`.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), CliError> {
        let schema = batch.schema();
        let keys: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| {
                let mut k = String::new();
                json_string(f.name(), &mut k);
                k
            })
            .collect();
        let mut value = String::new();
        let columns = prepare(batch);
        for row in 0..batch.num_rows() {
            self.buf.clear();
            if self.lines {
                if self.rows > 0 {
                    self.buf.push('\n');
                }
            } else {
                self.buf.push(if self.rows == 0 { '[' } else { ',' });
            }
            self.buf.push('{');
            for (i, col) in columns.iter().enumerate() {
                if i > 0 {
                    self.buf.push(',');
                }
                self.buf.push_str(&keys[i]);
                self.buf.push(':');
                value.clear();
                let is_text = matches!(
                    col.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Dictionary(_, _)
                );
                if !cell_text(col, row, true, &mut value) {
                    self.buf.push_str("null");
                } else if is_text {
                    json_string(&value, &mut self.buf);
                } else {
                    self.buf.push_str(&value);
                }
            }
            self.buf.push('}');
            self.out.write_all(self.buf.as_bytes()).map_err(|e| self.err(e))?;
            self.rows += 1;
        }
        Ok(())
    }

    /// Close the array (or end the last line) and hand back the writer.
    pub fn finish(mut self) -> Result<W, CliError> {
        let tail: &[u8] = match (self.lines, self.rows) {
            (true, 0) => b"",
            (true, _) => b"\n",
            (false, 0) => b"[]",
            (false, _) => b"]",
        };
        self.out.write_all(tail).map_err(|e| self.err(e))?;
        self.out.flush().map_err(|e| self.err(e))?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::record_batch;

    // Expected texts are what pandas 3.1 writes for the same frame (see the module docs).
    #[test]
    fn pandas_style_text() {
        let batch = record_batch!(
            ("generation_step", Int64, [0, 0]),
            ("token_masked", Utf8, ["a/b\n", "é\""]),
            ("l2_distance", Float32, [Some(1234.5678), None]),
            ("c", Float32, [Some(0.1234), Some(1.0)])
        )
        .unwrap();
        let mut json = JsonWriter::new(Vec::new(), "t", false);
        json.write(&batch).unwrap();
        let json = String::from_utf8(json.finish().unwrap()).unwrap();
        assert_eq!(
            json,
            r#"[{"generation_step":0,"token_masked":"a\/b\n","l2_distance":1234.5677490234,"c":0.1234000027},{"generation_step":0,"token_masked":"\u00e9\"","l2_distance":null,"c":1.0}]"#
        );
        let mut csv = CsvWriter::new(Vec::new(), "t");
        csv.write(&batch).unwrap();
        let csv = String::from_utf8(csv.finish().unwrap()).unwrap();
        assert_eq!(
            csv,
            "generation_step,token_masked,l2_distance,c\n0,\"a/b\n\",1234.5677,0.1234\n0,\"é\"\"\",,1.0\n"
        );
    }
}
