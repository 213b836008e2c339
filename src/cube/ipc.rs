//! Moving a [`Cube`] between wasm instances (decode worker → page) as bytes.
//!
//! Layout: `MICUBE1\0`, a little-endian `u64` length and a JSON header (axes and prompts), then
//! two Arrow IPC streams, each preceded by its `u64` length: the metric columns (one batch,
//! one `Float32` column per metric) and the token texts of all prompts, one after another (one
//! batch, one dictionary column).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, DictionaryArray, Int32Array, RecordBatch};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use super::{Cube, CubeError, Metric, Prompt};

const MAGIC: &[u8; 8] = b"MICUBE1\0";

#[derive(Serialize, Deserialize)]
struct Header {
    sources: Vec<String>,
    rows_read: u64,
    #[serde(default)]
    duplicates: u64,
    steps: Vec<i64>,
    layers: Vec<i64>,
    variants: Vec<String>,
    metrics: Vec<String>,
    prompts: Vec<PromptHeader>,
    /// The metric values travel apart (see [`Cube::to_transfer`]): the cells stream is empty.
    #[serde(default)]
    values_apart: bool,
}

#[derive(Serialize, Deserialize)]
struct PromptHeader {
    name: String,
    text: Option<String>,
    n_positions: usize,
    cell_offset: usize,
}

fn err(e: impl std::fmt::Display) -> CubeError {
    CubeError::Ipc(e.to_string())
}

/// Appends `batch` as an IPC stream preceded by its length (written in place: no copy).
fn write_stream(out: &mut Vec<u8>, batch: &RecordBatch) -> Result<(), CubeError> {
    let at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    {
        let mut w = StreamWriter::try_new(&mut *out, &batch.schema()).map_err(err)?;
        w.write(batch).map_err(err)?;
        w.finish().map_err(err)?;
    }
    let len = (out.len() - at - 8) as u64;
    out[at..at + 8].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

pub(super) fn write(cube: &Cube, values_apart: bool) -> Result<Vec<u8>, CubeError> {
    let header = Header {
        sources: cube.sources.clone(),
        rows_read: cube.rows_read,
        duplicates: cube.duplicates,
        steps: cube.steps.clone(),
        layers: cube.layers.clone(),
        variants: cube.variants.clone(),
        metrics: cube.metrics.iter().map(|m| m.name.clone()).collect(),
        prompts: cube
            .prompts
            .iter()
            .map(|p| PromptHeader {
                name: p.name.clone(),
                text: p.text.clone(),
                n_positions: p.n_positions(),
                cell_offset: p.cell_offset,
            })
            .collect(),
        values_apart,
    };
    let json = serde_json::to_vec(&header).map_err(err)?;
    let capacity = if values_apart { 0 } else { cube.memory_bytes() };
    let mut out = Vec::with_capacity(capacity + json.len() + 1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);

    let fields: Vec<Field> = cube
        .metrics
        .iter()
        .map(|m| Field::new(&m.name, DataType::Float32, true))
        .collect();
    let columns: Vec<ArrayRef> = cube
        .metrics
        .iter()
        .map(|m| Arc::new(m.values.clone()) as ArrayRef)
        .collect();
    if values_apart {
        out.extend_from_slice(&0u64.to_le_bytes());
    } else {
        let cells = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(err)?;
        write_stream(&mut out, &cells)?;
    }

    // All prompts share one dictionary of token texts (the builder makes it so).
    let keys: Int32Array = cube
        .prompts
        .iter()
        .flat_map(|p| p.tokens.keys().iter())
        .collect();
    let values = match cube.prompts.first() {
        Some(p) => p.tokens.values().clone(),
        None => Arc::new(arrow_array::StringArray::from(Vec::<&str>::new())) as ArrayRef,
    };
    let tokens = DictionaryArray::<Int32Type>::try_new(keys, values).map_err(err)?;
    let schema = Schema::new(vec![Field::new("token", tokens.data_type().clone(), true)]);
    let tokens = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(tokens)]).map_err(err)?;
    write_stream(&mut out, &tokens)?;
    Ok(out)
}

/// Splits off a `u64`-length-prefixed part.
fn take<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], CubeError> {
    if bytes.len() < 8 {
        return Err(err("truncated"));
    }
    let len = u64::from_le_bytes(bytes[..8].try_into().map_err(err)?) as usize;
    let rest = &bytes[8..];
    if rest.len() < len {
        return Err(err("truncated"));
    }
    let (part, rest) = rest.split_at(len);
    *bytes = rest;
    Ok(part)
}

fn read_stream(bytes: &[u8]) -> Result<RecordBatch, CubeError> {
    let mut r = StreamReader::try_new(bytes, None).map_err(err)?;
    r.next().ok_or_else(|| err("no batch"))?.map_err(err)
}

/// Reads a cube; `values` are the metric values when they travelled apart.
pub(super) fn read(bytes: &[u8], values: Option<Vec<Vec<f32>>>) -> Result<Cube, CubeError> {
    let mut rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| err("not a cube"))?;
    let header: Header = serde_json::from_slice(take(&mut rest)?).map_err(err)?;
    let cells = take(&mut rest)?;
    let tokens = read_stream(take(&mut rest)?)?;
    if tokens.num_columns() != 1 {
        return Err(err("column count does not match the header"));
    }
    let columns: Vec<arrow_array::Float32Array> = match (header.values_apart, values) {
        (false, None) => {
            let cells = read_stream(cells)?;
            cells.columns().iter().map(|c| c.as_primitive().clone()).collect()
        }
        (true, Some(values)) => values.into_iter().map(super::metric_values).collect(),
        _ => return Err(err("the metric values are missing or given twice")),
    };
    if columns.len() != header.metrics.len() {
        return Err(err("column count does not match the header"));
    }
    let total_cells: usize = header.prompts.iter().map(|p| p.n_positions).sum::<usize>()
        * header.steps.len()
        * header.variants.len()
        * header.layers.len();
    if columns.iter().any(|c| c.len() != total_cells) {
        return Err(err("metric length does not match the header"));
    }
    let metrics = header
        .metrics
        .into_iter()
        .zip(columns)
        .map(|(name, values)| Metric { name, values })
        .collect();
    let tokens = tokens.column(0).as_dictionary::<Int32Type>().clone();
    let mut start = 0;
    let mut prompts = Vec::new();
    for p in header.prompts {
        if start + p.n_positions > tokens.len() {
            return Err(err("token column shorter than the header says"));
        }
        prompts.push(Prompt {
            name: p.name,
            text: p.text,
            tokens: tokens.slice(start, p.n_positions),
            cell_offset: p.cell_offset,
        });
        start += p.n_positions;
    }
    Ok(Cube {
        sources: header.sources,
        rows_read: header.rows_read,
        duplicates: header.duplicates,
        steps: header.steps,
        layers: header.layers,
        variants: header.variants,
        prompts,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use crate::cube::CubeBuilder;
    use arrow_array::record_batch;

    #[test]
    fn round_trip() {
        // The last row repeats the cell of the third.
        let batch = record_batch!(
            ("prompt_name", Utf8, ["a", "b", "b", "b"]),
            ("layer", Int64, [0, 0, 1, 1]),
            ("token_position", Int64, [1, 0, 2, 2]),
            ("token_masked", Utf8, ["x", "<|image_pad|>", "y", "y"]),
            ("l2_distance", Float32, [Some(1.0), None, Some(7.0), Some(3.0)])
        )
        .unwrap();
        let mut b = CubeBuilder::new();
        b.begin_source("f.csv", &batch.schema()).unwrap();
        b.push_batch(&batch).unwrap();
        let cube = b.finish().unwrap();
        let back = super::super::Cube::from_ipc_bytes(&cube.to_ipc_bytes().unwrap()).unwrap();
        assert_eq!(back.layers, cube.layers);
        assert_eq!(back.prompts.len(), 2);
        assert_eq!(back.prompts[1].token(0), Some("<|image_pad|>"));
        assert_eq!(back.prompts[1].token(2), Some("y"));
        assert_eq!(back.prompts[0].token(1), Some("x"));
        assert_eq!(back.value(0, back.cell(1, 0, 0, 1), 2), Some(3.0));
        assert_eq!(back.value(0, back.cell(1, 0, 0, 0), 0), None);
        assert_eq!((cube.rows_read, cube.duplicates), (4, 1));
        assert_eq!((back.rows_read, back.duplicates), (4, 1));
        assert!(super::super::Cube::from_ipc_bytes(b"garbage").is_err());

        // The same with the values apart (the worker → page hand-over).
        let (bytes, values) = cube.to_transfer().unwrap();
        let values: Vec<Vec<f32>> = values.iter().map(|v| v.to_vec()).collect();
        let back = super::super::Cube::from_transfer(&bytes, values).unwrap();
        assert_eq!(back.duplicates, 1);
        assert_eq!(back.prompts[1].token(0), Some("<|image_pad|>"));
        assert_eq!(back.value(0, back.cell(1, 0, 0, 1), 2), Some(3.0));
        assert_eq!(back.value(0, back.cell(1, 0, 0, 0), 0), None);
        assert!(super::super::Cube::from_transfer(&bytes, vec![vec![1.0]]).is_err());
        assert!(super::super::Cube::from_ipc_bytes(&bytes).is_err());
    }
}
