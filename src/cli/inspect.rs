//! `inspect`: what a result file holds and what is wrong with it.

use std::collections::BTreeSet;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::Serialize;

use super::{CliError, Loaded};
use crate::ingest::{self, Format};

/// The text of an image patch token.
pub const IMAGE_TOKEN: &str = "<|image_pad|>";

/// The Parquet side of a file: writer, layout, sizes.
#[derive(Debug, Clone, Serialize)]
pub struct ParquetInfo {
    /// `created_by` from the footer.
    pub created_by: Option<String>,
    pub rows: i64,
    pub row_groups: usize,
    /// Rows of each row group.
    pub row_group_rows: Vec<i64>,
    /// The Arrow schema as readers see it.
    pub schema: Vec<SchemaField>,
    /// One entry per column chunk column, summed over row groups.
    pub columns: Vec<ColumnChunkInfo>,
}

/// One field of the schema.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaField {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// Storage of one column over all row groups.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnChunkInfo {
    pub name: String,
    pub physical_type: String,
    /// Codecs used (usually one).
    pub codecs: Vec<String>,
    pub encodings: Vec<String>,
    pub compressed_bytes: i64,
    pub uncompressed_bytes: i64,
}

/// Value summary of one metric.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    pub name: String,
    /// Cells holding a value.
    pub values: u64,
    /// Rows present whose value is null or NaN.
    pub null_or_nan_rows: u64,
    /// Values that are infinite (among `values`).
    pub infinite_values: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

/// One prompt of the file.
#[derive(Debug, Clone, Serialize)]
pub struct PromptSummary {
    pub name: String,
    pub positions: usize,
    /// Number of `<|image_pad|>` positions.
    pub image_tokens: usize,
    /// Side of the square patch grid, when the image block is square.
    pub image_grid_side: Option<usize>,
    /// Distinct token texts.
    pub distinct_tokens: usize,
}

/// Axis summary.
#[derive(Debug, Clone, Serialize)]
pub struct Axis {
    pub count: usize,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl Axis {
    fn of(values: &[i64]) -> Axis {
        Axis {
            count: values.len(),
            min: values.iter().copied().min(),
            max: values.iter().copied().max(),
        }
    }
}

/// Everything `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub file: String,
    /// The files read: more than one for a folder (a dataset); `parquet` describes the first.
    pub files: Vec<String>,
    pub format: Option<Format>,
    /// A JSON file in a pandas orient other than `records` (read as rows all the same).
    pub json_orient: Option<&'static str>,
    pub bytes: u64,
    pub parquet: Option<ParquetInfo>,
    /// Data rows read.
    pub rows: u64,
    pub steps: Vec<i64>,
    pub layers: Axis,
    pub variants: Vec<String>,
    pub prompts: Vec<PromptSummary>,
    pub metrics: Vec<MetricSummary>,
    /// Cells of the full grid (prompts × steps × variants × layers × positions).
    pub grid_cells: u64,
    /// Cells of the grid without a value in any metric (no row, or null/NaN everywhere).
    pub missing_cells: u64,
    /// Missing cells per step (steps without missing cells left out).
    pub missing_cells_by_step: Vec<(i64, u64)>,
    /// Rows that repeated a cell already seen.
    pub duplicates: u64,
    /// Rows without a layer or position.
    pub rows_skipped: u64,
    /// Problems found, in words.
    pub problems: Vec<String>,
}

/// Read the Parquet footer of `path`.
pub fn parquet_info(path: &Path) -> Result<ParquetInfo, CliError> {
    let err = |e: &dyn std::fmt::Display| CliError::ParquetRead {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| CliError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| err(&e))?;
    let meta = reader.metadata();
    let fm = meta.file_metadata();
    let schema = parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
        .map_err(|e| err(&e))?;
    let n_cols = fm.schema_descr().num_columns();
    let mut columns: Vec<ColumnChunkInfo> = (0..n_cols)
        .map(|i| {
            let c = fm.schema_descr().column(i);
            ColumnChunkInfo {
                name: c.path().string(),
                physical_type: c.physical_type().to_string(),
                codecs: Vec::new(),
                encodings: Vec::new(),
                compressed_bytes: 0,
                uncompressed_bytes: 0,
            }
        })
        .collect();
    let mut codecs: Vec<BTreeSet<String>> = vec![BTreeSet::new(); n_cols];
    let mut encodings: Vec<BTreeSet<String>> = vec![BTreeSet::new(); n_cols];
    for rg in meta.row_groups() {
        for (i, cc) in rg.columns().iter().enumerate() {
            let codec = format!("{:?}", cc.compression());
            codecs[i].insert(codec.split('(').next().unwrap_or(&codec).to_string());
            for e in cc.encodings() {
                encodings[i].insert(format!("{e:?}"));
            }
            columns[i].compressed_bytes += cc.compressed_size();
            columns[i].uncompressed_bytes += cc.uncompressed_size();
        }
    }
    for (i, c) in columns.iter_mut().enumerate() {
        c.codecs = codecs[i].iter().cloned().collect();
        c.encodings = encodings[i].iter().cloned().collect();
    }
    Ok(ParquetInfo {
        created_by: fm.created_by().map(str::to_string),
        rows: fm.num_rows(),
        row_groups: meta.num_row_groups(),
        row_group_rows: meta.row_groups().iter().map(|r| r.num_rows()).collect(),
        schema: schema
            .fields()
            .iter()
            .map(|f| SchemaField {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
            .collect(),
        columns,
    })
}

/// Build the report of one loaded file (`parquet` from [`parquet_info`] when it is Parquet).
pub fn report(file: &str, loaded: &Loaded, parquet: Option<ParquetInfo>) -> Report {
    let cube = &loaded.cube;
    let (ns, nv, nl) = (cube.steps.len(), cube.variants.len(), cube.layers.len());
    let nm = cube.metrics.len();
    let mut grid_cells = 0u64;
    let mut with_data = 0u64;
    let mut missing_by_step = vec![0u64; ns];
    let mut metric_values = vec![0u64; nm];
    let mut sums = vec![0f64; nm];
    let mut mins = vec![f64::INFINITY; nm];
    let mut maxs = vec![f64::NEG_INFINITY; nm];
    for (p, prompt) in cube.prompts.iter().enumerate() {
        let n = prompt.n_positions();
        for (s, missing) in missing_by_step.iter_mut().enumerate() {
            for v in 0..nv {
                for l in 0..nl {
                    let at = cube.cell(p, s, v, l);
                    let rows: Vec<&[f32]> = (0..nm).map(|m| cube.row(m, at)).collect();
                    for pos in 0..n {
                        grid_cells += 1;
                        let mut any = false;
                        for (m, row) in rows.iter().enumerate() {
                            let x = row[pos];
                            if !x.is_nan() {
                                any = true;
                                let x = x as f64;
                                metric_values[m] += 1;
                                sums[m] += x;
                                mins[m] = mins[m].min(x);
                                maxs[m] = maxs[m].max(x);
                            }
                        }
                        if any {
                            with_data += 1;
                        } else {
                            *missing += 1;
                        }
                    }
                }
            }
        }
    }
    // Each row that was kept fills one distinct cell.
    let distinct_rows = loaded.distinct_rows();
    let missing_cells = grid_cells - with_data;
    let infinite = cube.infinite_values();
    let metrics: Vec<MetricSummary> = cube
        .metrics
        .iter()
        .enumerate()
        .map(|(m, metric)| {
            let has = metric_values[m] > 0;
            MetricSummary {
                name: metric.name.clone(),
                values: metric_values[m],
                null_or_nan_rows: distinct_rows.saturating_sub(metric_values[m]),
                infinite_values: infinite[m],
                min: has.then_some(mins[m]),
                max: has.then_some(maxs[m]),
                mean: has.then(|| sums[m] / metric_values[m] as f64),
            }
        })
        .collect();
    let prompts: Vec<PromptSummary> = cube
        .prompts
        .iter()
        .map(|p| {
            let n = p.n_positions();
            let image: Vec<usize> = (0..n).filter(|&i| p.token(i) == Some(IMAGE_TOKEN)).collect();
            let side = (image.len() as f64).sqrt().round() as usize;
            let distinct: BTreeSet<&str> = (0..n).filter_map(|i| p.token(i)).collect();
            PromptSummary {
                name: p.name.clone(),
                positions: n,
                image_tokens: image.len(),
                image_grid_side: (!image.is_empty() && side * side == image.len()).then_some(side),
                distinct_tokens: distinct.len(),
            }
        })
        .collect();

    let mut problems = Vec::new();
    if missing_cells > 0 {
        let by_step: Vec<String> = missing_by_step
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .take(8)
            .map(|(s, c)| format!("step {}: {c}", cube.steps[s]))
            .collect();
        problems.push(format!(
            "{missing_cells} of {grid_cells} cells (steps × variants × layers × positions) have no value in any metric: no row, or null/NaN ({})",
            by_step.join(", ")
        ));
    }
    problems.extend(loaded.rows_not_kept());
    for m in &metrics {
        if m.null_or_nan_rows > 0 {
            problems.push(format!("{}: {} rows hold null or NaN", m.name, m.null_or_nan_rows));
        }
        if m.infinite_values > 0 {
            problems.push(format!(
                "{}: {} values are infinite (the viewer gives them the top colour and leaves them out of the colour scale)",
                m.name, m.infinite_values
            ));
        }
    }
    for (p, summary) in prompts.iter().enumerate() {
        if summary.image_tokens > 0 {
            let prompt = &cube.prompts[p];
            let image: Vec<usize> = (0..summary.positions).filter(|&i| prompt.token(i) == Some(IMAGE_TOKEN)).collect();
            if summary.image_grid_side.is_none() {
                problems.push(format!(
                    "prompt `{}`: the image block has {} `{IMAGE_TOKEN}` tokens, not a square number (no square patch grid)",
                    summary.name, summary.image_tokens
                ));
            }
            if let (Some(first), Some(last)) = (image.first(), image.last()) {
                if last - first + 1 != image.len() {
                    problems.push(format!(
                        "prompt `{}`: the `{IMAGE_TOKEN}` tokens are not contiguous (positions {first}..={last} hold {} of them)",
                        summary.name,
                        image.len()
                    ));
                }
            }
        }
    }
    Report {
        file: file.to_string(),
        files: loaded.files.iter().map(|f| f.display().to_string()).collect(),
        format: loaded.formats.first().copied(),
        json_orient: None,
        bytes: loaded.input_bytes.iter().sum(),
        parquet,
        rows: cube.rows_read,
        steps: cube.steps.clone(),
        layers: Axis::of(&cube.layers),
        variants: cube.variants.clone(),
        prompts,
        metrics,
        grid_cells,
        missing_cells,
        missing_cells_by_step: missing_by_step
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(s, &c)| (cube.steps[s], c))
            .collect(),
        duplicates: cube.duplicates,
        rows_skipped: loaded.rows_skipped,
        problems,
    }
}

/// The pandas orient of the JSON file `path` when it is not `records` ([`ingest::json_orient`]),
/// from its first bytes; `None` for records, JSON Lines, and a compressed file.
pub fn json_orient(path: &Path) -> Option<&'static str> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path).ok()?.take(ingest::JSON_ORIENT_BYTES as u64).read_to_end(&mut head).ok()?;
    ingest::json_orient(&head)
}
