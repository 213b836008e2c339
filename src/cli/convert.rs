//! Writing a [`Cube`] as Parquet tuned for this data (and as CSV).
//!
//! The rows are the cells of the dense cube with a value in some metric, step by step, in a
//! row order. Metrics are rounded to a number of decimals and stored as
//! `float32`; text columns are dictionary-encoded; `generation_step`, `layer` and
//! `token_position` use the narrowest signed integer type that holds their values; pages are
//! zstd-compressed; row groups hold whole generation steps, in step order, with statistics
//! (and a page index), so readers skip steps they do not need.
//!
//! The layout is measured, not assumed ([`choose_layout`]): on the real file a row group per
//! step in layer → variant → position order is smallest; on noisy synthetic data, whose
//! rounded values repeat across steps, steps sharing a row group (and so the metric
//! dictionaries) make the file about 25% smaller. The columns of a row group are taken from
//! the cube and encoded in parallel, one thread per core taking the columns in turn (largest
//! first), each column walking the rows itself (no rows are built for them to share): the
//! dictionary columns (text, steps, layers, metrics) by [`dictionary::encode_chunk`] from the
//! cube's keys, positions and plain metrics by arrow-rs's column writer. The CSV output takes
//! the same rows as record batches.

use std::io::Write;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use parquet::column::writer::{get_column_writer, ColumnCloseResult, ColumnWriter};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

use super::delta::{self, DeltaPages};
use super::dictionary::{self, Entries, FloatDictionary, Key};
use super::{CliError, Loaded};
use crate::cube::{Cube, Rounding};

/// Column names written (the names the viewer and the Python side use).
pub const STEP: &str = "generation_step";
pub const LAYER: &str = "layer";
pub const TOKEN: &str = "token_masked";
pub const POSITION: &str = "token_position";
pub const VARIANT: &str = "variant";
pub const PROMPT: &str = "prompt_name";
pub const CONFIG_PROMPT: &str = "config_prompt";

/// The order of rows within a generation step (steps always come first, then prompts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowOrder {
    /// variant → layer → position: one heatmap (variant) after another (the cube's layout).
    VariantLayerPosition,
    /// layer → variant → position: the variants of one layer together. Smallest on the real
    /// data (similar variants of one layer sit side by side).
    #[default]
    LayerVariantPosition,
    /// layer → position → variant: the order the Python writer uses.
    LayerPositionVariant,
    /// position → variant → layer: the layers of one masked token together. Smallest on
    /// noisy data (synthetic seed-scale data), where token positions then come almost free.
    PositionVariantLayer,
}

impl RowOrder {
    /// The coordinate of the order's innermost loop: what counts up along a run of rows.
    fn innermost(self) -> Along {
        match self {
            RowOrder::VariantLayerPosition | RowOrder::LayerVariantPosition => Along::Position,
            RowOrder::LayerPositionVariant => Along::Variant,
            RowOrder::PositionVariantLayer => Along::Layer,
        }
    }
}

/// The orders [`choose_layout`] tries.
pub const ORDER_CANDIDATES: [RowOrder; 2] = [
    RowOrder::LayerVariantPosition,
    RowOrder::PositionVariantLayer,
];

/// How rows are cut into row groups. Row groups always hold whole generation steps, in step
/// order, with statistics and a page index, so readers can skip steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowGroups {
    /// One row group per generation step.
    PerStep,
    /// Consecutive whole steps share a row group of about `max_rows` rows at most (a step
    /// larger than that is a row group of its own). Metric dictionaries are then shared by
    /// the steps: much smaller when values repeat across steps.
    WholeSteps { max_rows: usize },
}

/// Rows per row group for [`RowGroups::WholeSteps`] by default (the seed-scale 3.8M rows fit
/// in one).
pub const ROW_GROUP_ROWS: usize = 4 << 20;

/// How metric (float) columns are encoded in the Parquet pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FloatEncoding {
    /// `BYTE_STREAM_SPLIT`: the bytes of each float grouped by significance, which zstd
    /// compresses well.
    ByteStreamSplit,
    /// Dictionary while it stays under [`FLOAT_DICTIONARY_BYTES`], else plain. The dictionary
    /// is stored sorted and the indices byte-aligned ([`dictionary::encode_chunk`]): 10–20%
    /// smaller than arrow-rs's own dictionary pages on this data.
    #[default]
    Dictionary,
    /// Plain.
    Plain,
}

/// Largest dictionary page of a metric column before the writer falls back to plain (a
/// million values). With sorted, byte-aligned indices a large dictionary still beats plain
/// floats (seed scale per step: 64 KiB fell back to plain and was 0.5% larger overall), and
/// one limit for both row-group layouts lets [`choose_layout`] reuse the first step's size.
pub const FLOAT_DICTIONARY_BYTES: usize = 4 << 20;

/// Options of a conversion.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Round metrics to this many decimals ([`Rounding`]: as the pandas recipe does);
    /// `None` keeps the `float32` value as read. A cube read from float64 values (CSV, JSON)
    /// should have been rounded as it was read ([`load`](super::load)), not only here.
    pub decimals: Option<u32>,
    /// zstd compression level (1–22).
    pub zstd_level: i32,
    /// Row order within a step; `None`: the smaller of [`ORDER_CANDIDATES`] on a sample
    /// (see [`choose_layout`]).
    pub order: Option<RowOrder>,
    /// Row groups; `None`: the smaller of per step and shared on a sample.
    pub row_groups: Option<RowGroups>,
    pub float_encoding: FloatEncoding,
    /// Rows per batch: the CSV output's record batches, and the metric values a column thread
    /// rounds and adds to its dictionary at a time.
    pub batch_rows: usize,
    /// Write only every `layer_stride`-th layer (1: all). [`choose_layout`]'s trials encode a
    /// sample of the layers: the sizes they compare scale alike, at a fraction of the cost.
    pub layer_stride: usize,
    /// Most distinct values of a metric's dictionary in a row group before the column falls
    /// back to plain ([`FLOAT_DICTIONARY_BYTES`] of values).
    pub float_dictionary_entries: usize,
    /// Encode the columns of a row group on a thread each (else one after the other, on the
    /// writing thread: [`choose_layout`]'s trials, small and side by side already).
    pub column_threads: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            decimals: Some(4),
            zstd_level: 7,
            order: None,
            row_groups: None,
            float_encoding: FloatEncoding::default(),
            batch_rows: 64 * 1024,
            layer_stride: 1,
            float_dictionary_entries: FLOAT_DICTIONARY_BYTES / 4,
            column_threads: true,
        }
    }
}

/// Which columns are written, with which types, and the dictionaries of the text columns.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schema: SchemaRef,
    /// What each field of `schema` holds.
    columns: Vec<ColumnKind>,
    with_step: bool,
    with_token: bool,
    with_variant: bool,
    with_prompt: bool,
    with_config_prompt: bool,
    step_type: DataType,
    layer_type: DataType,
    position_type: DataType,
    /// All distinct token texts.
    token_values: ArrayRef,
    /// Per prompt, per position: key into `token_values`.
    token_keys: Vec<Vec<Option<i32>>>,
    variant_values: ArrayRef,
    prompt_values: ArrayRef,
    /// Per prompt: key into `config_values`.
    config_keys: Vec<Option<i32>>,
    config_values: ArrayRef,
    metric_names: Vec<String>,
}

/// What a column of the output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Step,
    Layer,
    Token,
    Position,
    Variant,
    /// The metric with this index in the cube.
    Metric(usize),
    Prompt,
    ConfigPrompt,
}

impl ColumnKind {
    /// The coordinates of a row its value changes with (metrics: all).
    fn depends(self) -> &'static [Along] {
        match self {
            ColumnKind::Step | ColumnKind::Prompt | ColumnKind::ConfigPrompt => &[],
            ColumnKind::Layer => &[Along::Layer],
            ColumnKind::Token | ColumnKind::Position => &[Along::Position],
            ColumnKind::Variant => &[Along::Variant],
            ColumnKind::Metric(_) => &[Along::Variant, Along::Layer, Along::Position],
        }
    }
}

/// The narrowest signed integer type holding `min..=max`.
pub fn narrow_int_type(min: i64, max: i64) -> DataType {
    let fits = |lo: i64, hi: i64| min >= lo && max <= hi;
    if fits(i8::MIN.into(), i8::MAX.into()) {
        DataType::Int8
    } else if fits(i16::MIN.into(), i16::MAX.into()) {
        DataType::Int16
    } else if fits(i32::MIN.into(), i32::MAX.into()) {
        DataType::Int32
    } else {
        DataType::Int64
    }
}

fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn range_of(values: &[i64]) -> (i64, i64) {
    let min = values.iter().copied().min().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    (min, max)
}

/// How many positions ahead [`Plan::step_rows`] prefetches a metric's row (one cache line of
/// values).
const PREFETCH_POSITIONS: usize = 16;

/// The layers taken from the cube (every `options.layer_stride`-th): the stride, and how
/// many are taken.
fn layers_taken(cube: &Cube, options: &ConvertOptions) -> (usize, usize) {
    let stride = options.layer_stride.max(1);
    (stride, cube.layers.len().div_ceil(stride))
}

/// Per prompt, metric `m`'s row of positions at step `step` for each variant `v` and layer
/// taken `l`, at `v * nl + l` ([`layers_taken`]).
fn metric_rows<'c>(
    cube: &'c Cube,
    m: usize,
    step: usize,
    options: &ConvertOptions,
) -> Vec<Vec<&'c [f32]>> {
    let (stride, nl) = layers_taken(cube, options);
    (0..cube.prompts.len())
        .map(|p| {
            (0..cube.variants.len() * nl)
                .map(|vl| cube.row(m, cube.cell(p, step, vl / nl, vl % nl * stride)))
                .collect()
        })
        .collect()
}

impl Plan {
    /// Plan the output of `loaded`: columns the inputs had (plus `prompt_name` when several
    /// prompts were merged). With `partitioned`, the step column is left to the folder names.
    pub fn new(loaded: &Loaded, partitioned: bool) -> Plan {
        let cube = &loaded.cube;
        let with_step = !partitioned && loaded.any(|c| c.step.is_some());
        let with_token = loaded.any(|c| c.token.is_some());
        let with_variant = loaded.any(|c| c.variant.is_some());
        let with_prompt = loaded.any(|c| c.prompt.is_some()) || cube.prompts.len() > 1;
        let with_config_prompt = cube.prompts.iter().any(|p| p.text.is_some());

        let (smin, smax) = range_of(&cube.steps);
        let (lmin, lmax) = range_of(&cube.layers);
        let max_pos = cube
            .prompts
            .iter()
            .map(|p| p.n_positions())
            .max()
            .unwrap_or(1) as i64
            - 1;
        let step_type = narrow_int_type(smin, smax);
        let layer_type = narrow_int_type(lmin, lmax);
        let position_type = narrow_int_type(0, max_pos.max(0));

        // One dictionary of token texts for all prompts.
        let mut token_index: std::collections::HashMap<&str, i32> = Default::default();
        let mut token_texts: Vec<&str> = Vec::new();
        let token_keys = cube
            .prompts
            .iter()
            .map(|p| {
                (0..p.n_positions())
                    .map(|pos| {
                        p.token(pos).map(|t| {
                            *token_index.entry(t).or_insert_with(|| {
                                token_texts.push(t);
                                (token_texts.len() - 1) as i32
                            })
                        })
                    })
                    .collect()
            })
            .collect();
        let mut config_texts: Vec<&str> = Vec::new();
        let config_keys = cube
            .prompts
            .iter()
            .map(|p| {
                p.text
                    .as_deref()
                    .map(|t| match config_texts.iter().position(|c| *c == t) {
                        Some(i) => i as i32,
                        None => {
                            config_texts.push(t);
                            (config_texts.len() - 1) as i32
                        }
                    })
            })
            .collect();

        let mut fields = Vec::new();
        let mut columns = Vec::new();
        let mut add = |field: Field, kind: ColumnKind| {
            fields.push(field);
            columns.push(kind);
        };
        if with_step {
            add(Field::new(STEP, step_type.clone(), false), ColumnKind::Step);
        }
        add(
            Field::new(LAYER, layer_type.clone(), false),
            ColumnKind::Layer,
        );
        if with_token {
            add(Field::new(TOKEN, dict_type(), true), ColumnKind::Token);
        }
        add(
            Field::new(POSITION, position_type.clone(), false),
            ColumnKind::Position,
        );
        if with_variant {
            add(Field::new(VARIANT, dict_type(), false), ColumnKind::Variant);
        }
        for (i, m) in cube.metrics.iter().enumerate() {
            add(
                Field::new(&m.name, DataType::Float32, true),
                ColumnKind::Metric(i),
            );
        }
        if with_prompt {
            add(Field::new(PROMPT, dict_type(), false), ColumnKind::Prompt);
        }
        if with_config_prompt {
            add(
                Field::new(CONFIG_PROMPT, dict_type(), true),
                ColumnKind::ConfigPrompt,
            );
        }
        Plan {
            schema: Arc::new(Schema::new(fields)),
            columns,
            with_step,
            with_token,
            with_variant,
            with_prompt,
            with_config_prompt,
            step_type,
            layer_type,
            position_type,
            token_values: Arc::new(StringArray::from(token_texts)),
            token_keys,
            variant_values: Arc::new(StringArray::from(cube.variants.clone())),
            prompt_values: Arc::new(StringArray::from(
                cube.prompts
                    .iter()
                    .map(|p| p.name.clone())
                    .collect::<Vec<_>>(),
            )),
            config_keys,
            config_values: Arc::new(StringArray::from(config_texts)),
            metric_names: cube.metrics.iter().map(|m| m.name.clone()).collect(),
        }
    }

    /// Names of the metric columns.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    /// Produce the rows of the step with index `step` (into `cube.steps`) in record batches
    /// of at most `options.batch_rows` rows, handing each to `sink`. Returns the rows produced.
    pub fn step_batches(
        &self,
        cube: &Cube,
        step: usize,
        options: &ConvertOptions,
        mut sink: impl FnMut(RecordBatch) -> Result<(), CliError>,
    ) -> Result<u64, CliError> {
        let round = Rounder::new(options.decimals);
        self.step_rows(cube, step, options, |mut rows| {
            sink(self.batch(cube, &mut rows, &round)?)
        })
    }

    /// The rows of the step with index `step` as [`Rows`] of at most `options.batch_rows`
    /// rows (metrics not rounded yet), handed to `sink`. Returns the rows produced.
    fn step_rows(
        &self,
        cube: &Cube,
        step: usize,
        options: &ConvertOptions,
        mut sink: impl FnMut(Rows) -> Result<(), CliError>,
    ) -> Result<u64, CliError> {
        let cells = self.step_cells(cube, step, options);
        let new_rows = || Rows::new(step, cube.metrics.len(), options.batch_rows);
        let mut rows = new_rows();
        let (stride, nl) = layers_taken(cube, options);
        let rows_by_metric: Vec<_> = (0..cube.metrics.len())
            .map(|m| metric_rows(cube, m, step, options))
            .collect();
        let mut values = vec![0.0; cube.metrics.len()];
        let mut result = Ok(());
        self.walk(cube, &cells, options, |p, v, l, pos| {
            if result.is_err() {
                return;
            }
            for (value, rows) in values.iter_mut().zip(&rows_by_metric) {
                *value = rows[p][v * nl + l][pos];
            }
            rows.push(p, l * stride, pos, v, &values);
            if rows.len() >= options.batch_rows {
                result = sink(std::mem::replace(&mut rows, new_rows()));
            }
        });
        result?;
        if rows.len() > 0 {
            sink(rows)?;
        }
        Ok(cells.rows)
    }

    /// The rows of the step with index `step` (into `cube.steps`): the cells of the layers
    /// taken (`options.layer_stride`) with a value in some metric.
    fn step_cells(&self, cube: &Cube, step: usize, options: &ConvertOptions) -> StepCells {
        let (nv, nl) = (cube.variants.len(), layers_taken(cube, options).1);
        let cells: usize = cube.prompts.iter().map(|p| nv * nl * p.n_positions()).sum();
        if cube.metrics.is_empty() {
            return StepCells { step, rows: 0, present: Some(vec![false; cells]) };
        }
        let rows_by_metric: Vec<_> = (0..cube.metrics.len())
            .map(|m| metric_rows(cube, m, step, options))
            .collect();
        let mut present: Option<Vec<bool>> = None;
        let (mut rows, mut at) = (0u64, 0usize);
        for p in 0..cube.prompts.len() {
            let n = cube.prompts[p].n_positions();
            for vl in 0..nv * nl {
                // Where the first metric has every value, every cell is a row (the usual case:
                // one pass over one metric); else each cell is looked at in every metric.
                if present.is_none() && !rows_by_metric[0][p][vl].iter().any(|v| v.is_nan()) {
                    rows += n as u64;
                } else {
                    let mask = present.get_or_insert_with(|| vec![true; cells]);
                    for (pos, is_row) in mask[at..at + n].iter_mut().enumerate() {
                        *is_row = rows_by_metric.iter().any(|r| !r[p][vl][pos].is_nan());
                        rows += u64::from(*is_row);
                    }
                }
                at += n;
            }
        }
        StepCells { step, rows, present }
    }

    /// Calls `f(prompt, variant, layer taken, position)` for each row of `cells`, in the row
    /// order (`options.order`): the rows of each run of [`Plan::walk_runs`] in turn.
    #[inline(always)]
    fn walk(
        &self,
        cube: &Cube,
        cells: &StepCells,
        options: &ConvertOptions,
        mut f: impl FnMut(usize, usize, usize, usize),
    ) {
        self.walk_runs(cube, cells, options, |p, v, l, pos, along, len| match along {
            Along::Variant => (v..v + len).for_each(|v| f(p, v, l, pos)),
            Along::Layer => (l..l + len).for_each(|l| f(p, v, l, pos)),
            Along::Position => (pos..pos + len).for_each(|pos| f(p, v, l, pos)),
        })
    }

    /// Calls `f(prompt, variant, layer taken, position, along, len)` for each run of rows of
    /// `cells` in the row order (`options.order`): `len` rows whose `along` coordinate counts
    /// up from the one given, the others fixed. A run is the innermost loop of the order, cut
    /// where a cell is no row.
    #[inline(always)]
    fn walk_runs(
        &self,
        cube: &Cube,
        cells: &StepCells,
        options: &ConvertOptions,
        mut f: impl FnMut(usize, usize, usize, usize, Along, usize),
    ) {
        let (nv, nl) = (cube.variants.len(), layers_taken(cube, options).1);
        let mut base = 0;
        for p in 0..cube.prompts.len() {
            let n = cube.prompts[p].n_positions();
            // The run of `extent` rows from (v, l, pos) along `along`, cut at cells that are
            // no rows.
            let mut run = |v: usize, l: usize, pos: usize, along: Along, extent: usize| {
                let Some(mask) = &cells.present else {
                    return f(p, v, l, pos, along, extent);
                };
                let at = |i: usize| along.step((v, l, pos), i);
                let is_row = |i: usize| {
                    let (v, l, pos) = at(i);
                    mask[base + (v * nl + l) * n + pos]
                };
                let mut i = 0;
                while i < extent {
                    let start = i;
                    while i < extent && is_row(i) {
                        i += 1;
                    }
                    if i > start {
                        let (v, l, pos) = at(start);
                        f(p, v, l, pos, along, i - start);
                    }
                    i += 1;
                }
            };
            match options.order.unwrap_or_default() {
                RowOrder::VariantLayerPosition => {
                    for v in 0..nv {
                        for l in 0..nl {
                            run(v, l, 0, Along::Position, n);
                        }
                    }
                }
                RowOrder::LayerVariantPosition => {
                    for l in 0..nl {
                        for v in 0..nv {
                            run(v, l, 0, Along::Position, n);
                        }
                    }
                }
                RowOrder::LayerPositionVariant => {
                    for l in 0..nl {
                        for pos in 0..n {
                            run(0, l, pos, Along::Variant, nv);
                        }
                    }
                }
                RowOrder::PositionVariantLayer => {
                    for pos in 0..n {
                        for v in 0..nv {
                            run(v, 0, pos, Along::Layer, nl);
                        }
                    }
                }
            }
            base += nv * nl * n;
        }
    }

    /// Turn rows into a record batch (metrics rounded with `round`).
    fn batch(
        &self,
        cube: &Cube,
        rows: &mut Rows,
        round: &Rounder,
    ) -> Result<RecordBatch, CliError> {
        let step = rows.step;
        let n = rows.len();
        let cast = |values: Vec<i64>, t: &DataType| -> Result<ArrayRef, CliError> {
            let a: ArrayRef = Arc::new(Int64Array::from(values));
            arrow_cast::cast(&a, t)
                .map_err(|e| CliError::Usage(format!("internal: integer narrowing failed: {e}")))
        };
        let dict = |keys: Int32Array, values: &ArrayRef| -> Result<ArrayRef, CliError> {
            DictionaryArray::<Int32Type>::try_new(keys, values.clone())
                .map(|d| Arc::new(d) as ArrayRef)
                .map_err(|e| CliError::Usage(format!("internal: dictionary column failed: {e}")))
        };
        let mut columns: Vec<ArrayRef> = Vec::new();
        if self.with_step {
            columns.push(cast(vec![cube.steps[step]; n], &self.step_type)?);
        }
        let layers: Vec<i64> = rows
            .layer
            .iter()
            .map(|&l| cube.layers[l as usize])
            .collect();
        columns.push(cast(layers, &self.layer_type)?);
        if self.with_token {
            let keys: Int32Array = rows
                .prompt
                .iter()
                .zip(&rows.position)
                .map(|(&p, &pos)| self.token_keys[p as usize][pos as usize])
                .collect();
            columns.push(dict(keys, &self.token_values)?);
        }
        let positions: Vec<i64> = rows.position.iter().map(|&p| p as i64).collect();
        columns.push(cast(positions, &self.position_type)?);
        if self.with_variant {
            let keys = Int32Array::from(rows.variant.iter().map(|&v| v as i32).collect::<Vec<_>>());
            columns.push(dict(keys, &self.variant_values)?);
        }
        for values in rows.metrics.iter_mut() {
            let v: Vec<Option<f32>> = values
                .drain(..)
                .map(|x| (!x.is_nan()).then(|| round.apply(x)))
                .collect();
            columns.push(Arc::new(Float32Array::from(v)));
        }
        if self.with_prompt {
            let keys = Int32Array::from(rows.prompt.iter().map(|&p| p as i32).collect::<Vec<_>>());
            columns.push(dict(keys, &self.prompt_values)?);
        }
        if self.with_config_prompt {
            let keys: Int32Array = rows
                .prompt
                .iter()
                .map(|&p| self.config_keys[p as usize])
                .collect();
            columns.push(dict(keys, &self.config_values)?);
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| CliError::Usage(format!("internal: batch does not match the plan: {e}")))
    }
}

/// [`Rounding`] of the cube's `f32` metric values, when decimals are asked. Values rounded so
/// already, as [`load`](super::load) rounds them for `convert`, stay as they are: the `f32`
/// nearest to a value of `d` decimals rounds to that value again. Where the `f32` spacing is
/// under `10^-d`, it is within half of it of the value; where it is over (never equal: a power
/// of two), it is the only `f32` within half a spacing of whatever it rounds to.
struct Rounder {
    rounding: Option<Rounding>,
}

impl Rounder {
    fn new(decimals: Option<u32>) -> Rounder {
        Rounder {
            rounding: decimals.map(Rounding::new),
        }
    }

    fn apply(&self, v: f32) -> f32 {
        match self.rounding {
            Some(r) => r.to_f32(v as f64),
            None => v,
        }
    }
}

/// A batch of rows of one step, taken from the cube in the row order (for the CSV output):
/// indexes into the cube's axes, and the metric values (not rounded yet).
struct Rows {
    /// Index of the step in `cube.steps`.
    step: usize,
    prompt: Vec<u32>,
    layer: Vec<u32>,
    position: Vec<u32>,
    variant: Vec<u32>,
    metrics: Vec<Vec<f32>>,
}

impl Rows {
    fn new(step: usize, n_metrics: usize, capacity: usize) -> Rows {
        Rows {
            step,
            prompt: Vec::with_capacity(capacity),
            layer: Vec::with_capacity(capacity),
            position: Vec::with_capacity(capacity),
            variant: Vec::with_capacity(capacity),
            metrics: (0..n_metrics)
                .map(|_| Vec::with_capacity(capacity))
                .collect(),
        }
    }

    fn len(&self) -> usize {
        self.layer.len()
    }

    #[inline(always)]
    fn push(&mut self, p: usize, l: usize, pos: usize, v: usize, cells: &[f32]) {
        self.prompt.push(p as u32);
        self.layer.push(l as u32);
        self.position.push(pos as u32);
        self.variant.push(v as u32);
        for (m, &c) in cells.iter().enumerate() {
            self.metrics[m].push(c);
        }
    }
}

/// The Parquet writer settings for a plan. The dictionary-encoded columns (text, steps,
/// layers and, by default, metrics) are written by [`dictionary::encode_chunk`]; these
/// settings apply to the file and to the columns written by arrow-rs's column writer:
/// positions (delta-encoded) and metrics that are not dictionary-encoded.
pub fn writer_properties(
    plan: &Plan,
    options: &ConvertOptions,
) -> Result<WriterProperties, CliError> {
    let level = zstd_level(options)?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Page)
        // Row groups are cut by the writer at step boundaries only.
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_data_page_row_count_limit(dictionary::PAGE_ROWS)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "mask_impact.writer".to_string(),
            format!("mask-impact {} convert", env!("CARGO_PKG_VERSION")),
        )]));
    if plan.with_step {
        props = props.set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]));
    }
    // Positions are not written by arrow-rs: they are delta-encoded by `super::delta` as the
    // rows are walked (`ColumnJob::encode`).
    for name in &plan.metric_names {
        let encoding = match options.float_encoding {
            // Too many distinct values for a dictionary: plain.
            FloatEncoding::Dictionary | FloatEncoding::Plain => Encoding::PLAIN,
            FloatEncoding::ByteStreamSplit => Encoding::BYTE_STREAM_SPLIT,
        };
        props = props.set_column_encoding(ColumnPath::from(name.as_str()), encoding);
    }
    Ok(props.build())
}

fn zstd_level(options: &ConvertOptions) -> Result<ZstdLevel, CliError> {
    ZstdLevel::try_new(options.zstd_level)
        .map_err(|e| CliError::Usage(format!("--level {}: {e}", options.zstd_level)))
}

/// What a Parquet write produced.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Written {
    pub rows: u64,
    pub row_groups: usize,
}

/// Counts the bytes written (for trial encodings).
#[derive(Default)]
struct ByteCount(u64);

impl Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The trials of [`choose_layout`] encode every third layer.
pub const TRIAL_LAYER_STRIDE: usize = 3;

/// The zstd level of [`choose_layout`]'s trials (the asked level when lower). Data pages of
/// noisy metrics are written at level 1 or stored anyway ([`dictionary`]'s level trial), and
/// level 7 on every page of every sample took most of the trials' time. On eight files (the
/// real fixture as Parquet and CSV, seed-scale and 20-step synthetic CSV, a 34-variant Parquet
/// file, three generated shapes with 2–10 variants, 1–3 prompts, 24–40 layers) the trials
/// chose the same order and row groups at level 1 as at level 7, in 22–45% less time (the
/// seed-scale CSV: 14.5 → 10.9 ms; the 34-variant file: 90 → 70 ms). A sample of every sixth
/// layer instead was faster still, but chose one row group per step for a 24-layer file,
/// 27% larger.
pub const TRIAL_ZSTD_LEVEL: i32 = 1;

/// Size in bytes of the Parquet file of `steps` written with `options`, on a sample of the
/// layers (every [`TRIAL_LAYER_STRIDE`]-th).
fn trial_bytes(
    cube: &Cube,
    plan: &Plan,
    options: &ConvertOptions,
    steps: &[usize],
) -> Result<u64, CliError> {
    let mut count = ByteCount::default();
    let sample = ConvertOptions {
        layer_stride: TRIAL_LAYER_STRIDE,
        zstd_level: options.zstd_level.min(TRIAL_ZSTD_LEVEL),
        column_threads: false,
        ..options.clone()
    };
    write_parquet(
        cube,
        plan,
        &sample,
        steps,
        &mut count,
        "(trial)",
        &mut |_| {},
    )?;
    Ok(count.0)
}

/// [`trial_bytes`] of each (options, steps), side by side (a thread per core taking the trials
/// in turn, each trial's columns encoded on that thread), in order.
fn trials_bytes(
    cube: &Cube,
    plan: &Plan,
    trials: &[(ConvertOptions, &[usize])],
) -> Result<Vec<u64>, CliError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let order: Vec<usize> = (0..trials.len()).collect();
    let sizes = super::in_turn(
        &order,
        threads,
        |i, _| trial_bytes(cube, plan, &trials[i].0, trials[i].1),
        || {},
    );
    sizes
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Err(CliError::Usage("internal: a layout trial panicked".into()))))
        .collect()
}

/// `options` with the choices left open (`None`) made by measuring: each candidate order
/// encodes the first step, the smallest wins; then the first two steps are encoded in one row
/// group and in one per step, and the sizes extrapolated to all steps decide. The trials of
/// each stage run side by side. Data decides: real files (few distinct values,
/// smooth across positions) favour layer-major order and a row group per step; noisy data
/// favours position-major order and shared row groups (its values repeat across steps).
pub fn choose_layout(
    cube: &Cube,
    plan: &Plan,
    options: &ConvertOptions,
) -> Result<ConvertOptions, CliError> {
    let mut chosen = options.clone();
    if cube.steps.is_empty() {
        chosen.order = Some(chosen.order.unwrap_or_default());
        chosen.row_groups = Some(chosen.row_groups.unwrap_or(RowGroups::PerStep));
        return Ok(chosen);
    }
    // Size of the first step alone, per step, in the chosen order (once measured).
    let mut first_step_bytes = None;
    if chosen.order.is_none() {
        let trials: Vec<(ConvertOptions, &[usize])> = ORDER_CANDIDATES
            .iter()
            .map(|&order| {
                let trial = ConvertOptions {
                    order: Some(order),
                    row_groups: Some(RowGroups::PerStep),
                    ..options.clone()
                };
                (trial, &[0][..])
            })
            .collect();
        let sizes = trials_bytes(cube, plan, &trials)?;
        // The smallest; the first candidate on a tie.
        let mut best: Option<(u64, RowOrder)> = None;
        for (bytes, order) in sizes.into_iter().zip(ORDER_CANDIDATES) {
            if best.is_none_or(|(b, _)| bytes < b) {
                best = Some((bytes, order));
            }
        }
        chosen.order = best.map(|(_, o)| o);
        first_step_bytes = best.map(|(b, _)| b);
    }
    if chosen.row_groups.is_none() {
        let shared = RowGroups::WholeSteps {
            max_rows: ROW_GROUP_ROWS,
        };
        chosen.row_groups = Some(if cube.steps.len() < 2 {
            RowGroups::PerStep
        } else {
            // Per step, every step costs about the same; shared, the first step carries the
            // dictionaries and later steps add only what they do not repeat. Two steps give
            // both costs; extrapolate to all steps (pessimistic for sharing: the new values
            // of later steps only become fewer).
            let with = |row_groups| ConvertOptions {
                row_groups: Some(row_groups),
                ..chosen.clone()
            };
            let mut trials: Vec<(ConvertOptions, &[usize])> =
                vec![(with(RowGroups::PerStep), &[1]), (with(shared), &[0, 1])];
            if first_step_bytes.is_none() {
                trials.push((with(RowGroups::PerStep), &[0]));
            }
            let sizes = trials_bytes(cube, plan, &trials)?;
            let (second, shared_two) = (sizes[0], sizes[1]);
            let first = first_step_bytes.unwrap_or_else(|| sizes[2]);
            let per_step = first + second;
            // One step is one row group either way, written with the same settings.
            let shared_first = first;
            let n = cube.steps.len() as f64;
            let per_step_all = per_step as f64 / 2.0 * n;
            let shared_all =
                shared_first as f64 + shared_two.saturating_sub(shared_first) as f64 * (n - 1.0);
            if shared_all < per_step_all {
                shared
            } else {
                RowGroups::PerStep
            }
        });
    }
    Ok(chosen)
}

/// Write the steps `steps` (indexes into `cube.steps`) of `cube` as one Parquet file to `out`,
/// row groups cut at step boundaries as `options.row_groups` says (`None`: one per step).
/// `progress` gets the rows written so far.
///
/// The columns of a row group are taken from the cube and encoded side by side, a thread per
/// core ([`encode_group`]); the row groups are written in step order.
pub fn write_parquet<W: Write + Send>(
    cube: &Cube,
    plan: &Plan,
    options: &ConvertOptions,
    steps: &[usize],
    out: W,
    path_for_errors: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<Written, CliError> {
    let werr = |e: parquet::errors::ParquetError| CliError::ParquetWrite {
        path: path_for_errors.to_string(),
        message: e.to_string(),
    };
    let props = writer_properties(plan, options)?;
    let level = zstd_level(options)?;
    // The file writer keeps the Arrow schema in the footer as `ArrowWriter` does.
    let writer =
        ArrowWriter::try_new(out, plan.schema.clone(), Some(props.clone())).map_err(werr)?;
    let props = Arc::new(props);
    let (mut file_writer, _) = writer.into_serialized_writer().map_err(werr)?;
    let descriptors: Vec<ColumnDescPtr> = (0..plan.columns.len())
        .map(|i| file_writer.schema_descr().column(i))
        .collect();
    let mut written = Written::default();
    let max_rows = match options.row_groups {
        Some(RowGroups::WholeSteps { max_rows }) => max_rows as u64,
        Some(RowGroups::PerStep) | None => 0,
    };
    // The steps of the row group being cut, with their rows.
    let mut group: Vec<StepCells> = Vec::new();
    let mut in_group = 0u64;
    let mut write_group = |group: &mut Vec<StepCells>| -> Result<(), CliError> {
        let chunks = encode_group(cube, plan, options, &props, level, &descriptors, group, |rows| {
            written.rows += rows;
            progress(written.rows);
        })?;
        let mut rg = file_writer.next_row_group().map_err(werr)?;
        for chunk in chunks {
            let (bytes, close) = chunk.map_err(werr)?;
            rg.append_column(&bytes, close).map_err(werr)?;
        }
        rg.close().map_err(werr)?;
        written.row_groups += 1;
        group.clear();
        Ok(())
    };
    for &s in steps {
        let cells = plan.step_cells(cube, s, options);
        let rows = cells.rows;
        group.push(cells);
        in_group += rows;
        // Close the group when the next step (assumed the size of this one) would not fit.
        if in_group > 0 && in_group + rows > max_rows {
            write_group(&mut group)?;
            in_group = 0;
        }
    }
    if in_group > 0 {
        write_group(&mut group)?;
    }
    let mut inner = file_writer.into_inner().map_err(werr)?;
    inner.flush().map_err(|e| CliError::Io {
        path: path_for_errors.to_string(),
        message: e.to_string(),
    })?;
    Ok(written)
}

/// The rows of one step: the cells with a value in some metric, found once for all the
/// column threads ([`Plan::step_cells`]).
struct StepCells {
    /// Index of the step in `cube.steps`.
    step: usize,
    rows: u64,
    /// Per cell in the cube's order (per prompt, per variant and layer taken, per position):
    /// whether it is a row. `None`: every cell is.
    present: Option<Vec<bool>>,
}

/// Which coordinate of a row counts up along a run of [`Plan::walk_runs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Along {
    Variant,
    Layer,
    Position,
}

impl Along {
    /// The (variant, layer, position) `i` rows into a run that starts at `at`.
    #[inline(always)]
    fn step(self, (v, l, pos): (usize, usize, usize), i: usize) -> (usize, usize, usize) {
        match self {
            Along::Variant => (v + i, l, pos),
            Along::Layer => (v, l + i, pos),
            Along::Position => (v, l, pos + i),
        }
    }
}

/// Encode the columns of one row group (the rows of `group`'s steps), each taking its values
/// from the cube, side by side on a thread per core (with `options.column_threads`), the
/// largest first. `progress` gets the rows of each step once the first metric column has
/// taken them. Returns the column chunks in column order.
#[allow(clippy::too_many_arguments)]
fn encode_group(
    cube: &Cube,
    plan: &Plan,
    options: &ConvertOptions,
    props: &WriterPropertiesPtr,
    level: ZstdLevel,
    descriptors: &[ColumnDescPtr],
    group: &[StepCells],
    mut progress: impl FnMut(u64),
) -> Result<Vec<parquet::errors::Result<(super::chunk::Chunk, ColumnCloseResult)>>, CliError> {
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    // The first metric column (the slowest to take its rows) reports progress; the sender
    // goes when the jobs do.
    let reporter = plan
        .columns
        .iter()
        .position(|k| matches!(k, ColumnKind::Metric(_)))
        .unwrap_or(0);
    let mut tx = Some(tx);
    let columns = plan.columns.iter().zip(descriptors).enumerate();
    let jobs = columns.map(move |(i, (&kind, descr))| {
        let column = ColumnJob {
            kind,
            descr: descr.clone(),
            props: props.clone(),
            level,
            cube,
            plan,
            options,
        };
        (column, if i == reporter { tx.take() } else { None })
    });
    if !options.column_threads {
        let chunks = jobs.map(|(column, tx)| column.encode(group, tx)).collect();
        rx.try_iter().for_each(&mut progress);
        return Ok(chunks);
    }
    // One thread per core takes the columns in turn, the largest first (metrics, then
    // positions): a thread per column had nine working sets of megabytes share two cores'
    // caches, and left the largest column to finish alone. The reporting column goes first:
    // its sender leaves `jobs` with the first column taken, so the progress loop ends once
    // that column is done, whatever becomes of the others.
    let jobs: Vec<_> = jobs.map(|job| std::sync::Mutex::new(Some(job))).collect();
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| {
        let size = match plan.columns[i] {
            ColumnKind::Metric(_) => 0,
            ColumnKind::Position => 1,
            _ => 2,
        };
        (i != reporter, size)
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks = super::in_turn(
        &order,
        threads,
        |i, waiting| {
            let (column, tx) = jobs[i].lock().ok()?.take()?;
            // Its pages on this thread alone while columns wait for a thread; the last
            // columns may use the cores the others leave.
            Some(dictionary::with_compress_threads(
                if waiting { 1 } else { 0 },
                || column.encode(group, tx),
            ))
        },
        // Until the reporting column has taken all its rows (its sender is then dropped).
        || rx.iter().for_each(&mut progress),
    );
    chunks
        .into_iter()
        .map(|c| c.flatten().ok_or_else(|| CliError::Usage("internal: a column encoder panicked".into())))
        .collect()
}

/// A dictionary column's keys for a row group, in the narrowest type that holds its
/// dictionary's indices (and the "no value" key).
enum KeyVec {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    /// Runs of one key (`(key, rows)`, [`dictionary::NULL_KEY`]: no value), for a column that
    /// keeps its value along the order's runs ([`dictionary::encode_chunk_runs`]).
    Runs(Vec<(u32, u32)>),
}

impl KeyVec {
    /// Keys into a dictionary of `entries` entries, kept as runs with `runs`.
    fn for_entries(entries: usize, runs: bool) -> KeyVec {
        if runs {
            KeyVec::Runs(Vec::new())
        } else if entries <= <u8 as Key>::LIMIT {
            KeyVec::U8(Vec::new())
        } else if entries <= <u16 as Key>::LIMIT {
            KeyVec::U16(Vec::new())
        } else {
            KeyVec::U32(Vec::new())
        }
    }

    /// Room for `rows` more keys.
    fn reserve(&mut self, rows: usize) {
        match self {
            KeyVec::U8(v) => v.reserve(rows),
            KeyVec::U16(v) => v.reserve(rows),
            KeyVec::U32(v) => v.reserve(rows),
            KeyVec::Runs(_) => {}
        }
    }

    /// Add a run of `rows` rows of `key` to runs, joined to the last run when it has the same.
    fn push_run(runs: &mut Vec<(u32, u32)>, mut rows: usize, key: Option<u32>) {
        let key = key.unwrap_or(dictionary::NULL_KEY);
        while rows > 0 {
            match runs.last_mut() {
                Some((k, n)) if *k == key && *n < u32::MAX => {
                    let add = rows.min((u32::MAX - *n) as usize);
                    *n += add as u32;
                    rows -= add;
                }
                _ => {
                    let add = rows.min(u32::MAX as usize);
                    runs.push((key, add as u32));
                    rows -= add;
                }
            }
        }
    }

    /// Add `rows` rows of the same key (`None`: no value).
    fn extend_rows(&mut self, rows: usize, key: Option<u32>) {
        match self {
            KeyVec::U8(v) => v.extend(std::iter::repeat_n(u8::of(key), rows)),
            KeyVec::U16(v) => v.extend(std::iter::repeat_n(u16::of(key), rows)),
            KeyVec::U32(v) => v.extend(std::iter::repeat_n(u32::of(key), rows)),
            KeyVec::Runs(runs) => Self::push_run(runs, rows, key),
        }
    }

    /// Add a row for each key of `keys` (`None`: no value).
    fn extend_keys(&mut self, keys: impl Iterator<Item = Option<u32>>) {
        match self {
            KeyVec::U8(v) => v.extend(keys.map(u8::of)),
            KeyVec::U16(v) => v.extend(keys.map(u16::of)),
            KeyVec::U32(v) => v.extend(keys.map(u32::of)),
            KeyVec::Runs(runs) => keys.for_each(|k| Self::push_run(runs, 1, k)),
        }
    }

    /// Add the rows of a run of [`Plan::walk_runs`] (`len` rows along `along` from `at`),
    /// `key` giving the key of (variant, layer, position) and depending only on `depends`:
    /// along another coordinate, one key for all the rows.
    fn extend_run(
        &mut self,
        at: (usize, usize, usize),
        along: Along,
        len: usize,
        depends: &[Along],
        key: impl Fn((usize, usize, usize)) -> Option<u32>,
    ) {
        if depends.contains(&along) {
            self.extend_keys((0..len).map(|i| key(along.step(at, i))));
        } else {
            self.extend_rows(len, key(at));
        }
    }

    fn encode(
        &self,
        descr: &ColumnDescPtr,
        entries: &Entries<'_>,
        level: ZstdLevel,
    ) -> parquet::errors::Result<(super::chunk::Chunk, ColumnCloseResult)> {
        match self {
            KeyVec::U8(v) => dictionary::encode_chunk(descr, entries, v, level),
            KeyVec::U16(v) => dictionary::encode_chunk(descr, entries, v, level),
            KeyVec::U32(v) => dictionary::encode_chunk(descr, entries, v, level),
            KeyVec::Runs(runs) => dictionary::encode_chunk_runs(descr, entries, runs, level),
        }
    }
}

/// One column of a row group, encoded from the cube by one thread.
struct ColumnJob<'a> {
    kind: ColumnKind,
    descr: ColumnDescPtr,
    props: WriterPropertiesPtr,
    level: ZstdLevel,
    cube: &'a Cube,
    plan: &'a Plan,
    options: &'a ConvertOptions,
}

impl ColumnJob<'_> {
    /// Take this column's values of the rows of `group` from the cube, then encode the chunk.
    /// `progress`, when given, gets the rows of each step once taken.
    fn encode(
        &self,
        group: &[StepCells],
        progress: Option<std::sync::mpsc::Sender<u64>>,
    ) -> parquet::errors::Result<(super::chunk::Chunk, ColumnCloseResult)> {
        let plan = self.plan;
        let cube = self.cube;
        let ints = |v: &[i64]| match self.descr.physical_type() {
            PhysicalType::INT64 => Entries::Int64(v.to_vec()),
            _ => Entries::Int32(v.iter().map(|&x| x as i32).collect()),
        };
        fn texts(a: &ArrayRef) -> Entries<'_> {
            Entries::Text(
                (0..a.len())
                    .map(|i| a.as_string::<i32>().value(i))
                    .collect(),
            )
        }
        // A column whose value stays the same along the order's runs (a step, a prompt; a layer
        // or a variant where positions count up) is kept and written as runs: row by row, each
        // such column took 3-6 ms of the seed-scale write.
        let depends = self.kind.depends();
        let runs = !depends.contains(&self.options.order.unwrap_or_default().innermost());
        // The dictionary of a dictionary column (metrics build theirs from the values).
        let entries = match self.kind {
            ColumnKind::Step => Some(ints(&cube.steps)),
            ColumnKind::Layer => Some(ints(&cube.layers)),
            ColumnKind::Token => Some(texts(&plan.token_values)),
            ColumnKind::Variant => Some(texts(&plan.variant_values)),
            ColumnKind::Prompt => Some(texts(&plan.prompt_values)),
            ColumnKind::ConfigPrompt => Some(texts(&plan.config_values)),
            // Positions are delta-encoded below, in every order: they count up by one along a
            // run or repeat for a whole run.
            ColumnKind::Position | ColumnKind::Metric(_) => None,
        };
        let mut keys = KeyVec::for_entries(entries.as_ref().map_or(0, Entries::len), runs);
        let rows: u64 = group.iter().map(|c| c.rows).sum();
        keys.reserve(if entries.is_some() { rows as usize } else { 0 });
        // A metric's values when they are written plain.
        let mut values: Vec<f32> = Vec::new();
        let round = Rounder::new(self.options.decimals);
        // Metric values get their dictionary batch by batch; when there are too many distinct
        // ones, they are kept plain.
        let mut float_dictionary = (self.options.float_encoding == FloatEncoding::Dictionary)
            .then(|| FloatDictionary::new(self.options.float_dictionary_entries));
        // Positions that run along: delta-encoded as they are walked.
        let mut positions = matches!(self.kind, ColumnKind::Position)
            .then(|| DeltaPages::new(self.descr.physical_type() == PhysicalType::INT32, dictionary::PAGE_ROWS));
        let (stride, nl) = layers_taken(cube, self.options);
        for cells in group {
            match self.kind {
                ColumnKind::Step => keys.extend_rows(cells.rows as usize, Some(cells.step as u32)),
                ColumnKind::Layer => plan.walk_runs(cube, cells, self.options, |_p, v, l, pos, along, len| {
                    keys.extend_run((v, l, pos), along, len, depends, |(_, l, _)| Some((l * stride) as u32))
                }),
                ColumnKind::Token => plan.walk_runs(cube, cells, self.options, |p, v, l, pos, along, len| {
                    let tokens = &plan.token_keys[p];
                    keys.extend_run((v, l, pos), along, len, depends, |(_, _, pos)| {
                        tokens[pos].map(|k| k as u32)
                    })
                }),
                ColumnKind::Position => {
                    if let Some(positions) = positions.as_mut() {
                        plan.walk_runs(cube, cells, self.options, |_p, _v, _l, pos, along, len| {
                            let step = i64::from(along == Along::Position);
                            positions.push_run(pos as i64, len, step);
                        });
                    }
                }
                ColumnKind::Variant => plan.walk_runs(cube, cells, self.options, |_p, v, l, pos, along, len| {
                    keys.extend_run((v, l, pos), along, len, depends, |(v, _, _)| Some(v as u32))
                }),
                ColumnKind::Prompt => plan.walk_runs(cube, cells, self.options, |p, v, l, pos, along, len| {
                    keys.extend_run((v, l, pos), along, len, depends, |_| Some(p as u32))
                }),
                ColumnKind::ConfigPrompt => plan.walk_runs(cube, cells, self.options, |p, v, l, pos, along, len| {
                    let key = plan.config_keys[p].map(|k| k as u32);
                    keys.extend_run((v, l, pos), along, len, depends, |_| key)
                }),
                ColumnKind::Metric(m) => {
                    let metric_rows = metric_rows(cube, m, cells.step, self.options);
                    let batch_rows = self.options.batch_rows.max(1);
                    let mut batch: Vec<f32> = Vec::with_capacity(batch_rows);
                    // The dictionary rounds each distinct value once.
                    let mut take = |batch: &mut Vec<f32>| {
                        let Some(d) = float_dictionary.as_mut() else {
                            values.extend(batch.drain(..).map(|v| round.apply(v)));
                            return;
                        };
                        let before = d.keys.len();
                        let pushed = match round.rounding {
                            Some(r) => d.push_rounded(batch, r),
                            None => d.push(batch, |v| v),
                        };
                        if !pushed {
                            // Too many distinct values: plain values from here on, the rows so
                            // far taken back out of the dictionary.
                            values.extend(
                                d.keys[..before]
                                    .iter()
                                    .map(|&k| d.values.get(k as usize).copied().unwrap_or(f32::NAN)),
                            );
                            values.extend(batch.iter().map(|&v| round.apply(v)));
                            float_dictionary = None;
                        }
                        batch.clear();
                    };
                    plan.walk_runs(cube, cells, self.options, |p, v, l, pos, along, len| {
                        if along == Along::Position {
                            // A run along positions is a slice of one row.
                            let mut rest = &metric_rows[p][v * nl + l][pos..pos + len];
                            while !rest.is_empty() {
                                let (now, later) = rest.split_at((batch_rows - batch.len()).min(rest.len()));
                                batch.extend_from_slice(now);
                                rest = later;
                                if batch.len() >= batch_rows {
                                    take(&mut batch);
                                }
                            }
                            return;
                        }
                        for i in 0..len {
                            let (v, l, pos) = along.step((v, l, pos), i);
                            let row = metric_rows[p][v * nl + l];
                            // Position-major orders take each value from another row: the
                            // hardware sees no stream to prefetch.
                            if let Some(ahead) = row.get(pos + PREFETCH_POSITIONS) {
                                dictionary::prefetch(ahead);
                            }
                            batch.push(row[pos]);
                            if batch.len() >= batch_rows {
                                take(&mut batch);
                            }
                        }
                    });
                    if !batch.is_empty() {
                        take(&mut batch);
                    }
                }
            }
            if let Some(tx) = &progress {
                let _ = tx.send(cells.rows);
            }
        }
        drop(progress);
        if let Some(entries) = &entries {
            return keys.encode(&self.descr, entries, self.level);
        }
        match self.kind {
            ColumnKind::Position => {
                let pages = positions.map(DeltaPages::finish).unwrap_or_default();
                delta::encode_chunk(&self.descr, pages, self.level)
            }
            ColumnKind::Metric(_) => {
                if let Some(d) = float_dictionary {
                    return dictionary::encode_chunk::<u32>(
                        &self.descr,
                        &Entries::Float(d.values),
                        &d.keys,
                        self.level,
                    );
                }
                self.typed_chunk(|writer| match writer {
                    ColumnWriter::FloatColumnWriter(mut w) => {
                        let present: Vec<f32> =
                            values.iter().copied().filter(|v| !v.is_nan()).collect();
                        let levels: Vec<i16> =
                            values.iter().map(|v| i16::from(!v.is_nan())).collect();
                        w.write_batch(&present, Some(&levels), None)?;
                        w.close()
                    }
                    _ => Err(ParquetError::General("a metric column is not float".into())),
                })
            }
            _ => Err(ParquetError::General(format!(
                "internal: {:?} has no dictionary",
                self.kind
            ))),
        }
    }

    /// A chunk written by arrow-rs's column writer for this column (with `self.props`).
    fn typed_chunk(
        &self,
        write: impl FnOnce(ColumnWriter<'_>) -> parquet::errors::Result<ColumnCloseResult>,
    ) -> parquet::errors::Result<(super::chunk::Chunk, ColumnCloseResult)> {
        let mut sink = TrackedWrite::new(Vec::new());
        let close = write(get_column_writer(
            self.descr.clone(),
            self.props.clone(),
            Box::new(SerializedPageWriter::new(&mut sink)),
        ))?;
        Ok((bytes::Bytes::from(sink.into_inner()?).into(), close))
    }
}

/// Write the steps `steps` of `cube` as CSV (pandas style: header, `float32` shortest form,
/// empty for no value) to `out`.
pub fn write_csv<W: Write>(
    cube: &Cube,
    plan: &Plan,
    options: &ConvertOptions,
    steps: &[usize],
    out: W,
    path_for_errors: &str,
) -> Result<u64, CliError> {
    let mut csv = super::text::CsvWriter::new(out, path_for_errors);
    let mut rows = 0;
    for &s in steps {
        rows += plan.step_batches(cube, s, options, |batch| csv.write(&batch))?;
    }
    csv.finish()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_types() {
        assert_eq!(narrow_int_type(0, 127), DataType::Int8);
        assert_eq!(narrow_int_type(0, 128), DataType::Int16);
        assert_eq!(narrow_int_type(-129, 0), DataType::Int16);
        assert_eq!(narrow_int_type(0, 1052), DataType::Int16);
        assert_eq!(narrow_int_type(0, 40_000), DataType::Int32);
        assert_eq!(narrow_int_type(0, 1 << 40), DataType::Int64);
    }

    /// A metric with more distinct values than its dictionary may hold falls back to plain
    /// pages after some batches went into the dictionary: every value must still be written
    /// (read back with arrow-rs's reader, against the values the input was made of).
    #[test]
    fn metric_dictionary_overflow_keeps_every_value() {
        use arrow_array::types::{Float32Type, Int64Type};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        const L2: &str = "l2_distance";
        const COSINE: &str = "cosine_distance";
        let dir = std::env::temp_dir().join(format!("mi-overflow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.csv");
        // 2 steps × 4 layers × 10 positions × 2 variants: l2 distinct on every row, cosine
        // one of 7 values; both written with 4 decimals (rounding keeps them).
        let mut csv = String::from("generation_step,layer,token_masked,token_position,variant,l2_distance,cosine_distance\n");
        let mut expected = Vec::new();
        for step in 0..2 {
            for layer in 0..4 {
                for pos in 0..10 {
                    for variant in ["Full", "Attn"] {
                        let i = expected.len();
                        let l2 = format!("{}.{:04}", i / 7, (i * 37) % 10_000);
                        let cos = format!("0.{:04}", (i % 7) * 1111);
                        csv += &format!("{step},{layer},t{pos},{pos},{variant},{l2},{cos}\n");
                        expected.push((step, layer, pos, variant.to_string(), l2, cos));
                    }
                }
            }
        }
        std::fs::write(&path, csv).unwrap();
        let loaded = super::super::load(&[path], None, |_| {}).unwrap();
        let plan = Plan::new(&loaded, false);
        for row_groups in [RowGroups::PerStep, RowGroups::WholeSteps { max_rows: 1000 }] {
            let options = ConvertOptions {
                order: Some(RowOrder::LayerVariantPosition),
                row_groups: Some(row_groups),
                // Overflow in the fourth batch of the first row group.
                batch_rows: 16,
                float_dictionary_entries: 50,
                ..ConvertOptions::default()
            };
            let mut out = Vec::new();
            write_parquet(
                &loaded.cube,
                &plan,
                &options,
                &[0, 1],
                &mut out,
                "(test)",
                &mut |_| {},
            )
            .unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(out)).unwrap();
            let chunks = reader.metadata().row_groups()[0].columns().to_vec();
            let encodings = |name: &str| {
                let chunk = chunks
                    .iter()
                    .find(|c| c.column_path().string() == name)
                    .unwrap();
                chunk.encodings().collect::<Vec<_>>()
            };
            assert!(
                !encodings(L2).contains(&Encoding::RLE_DICTIONARY),
                "l2 falls back to plain"
            );
            assert!(
                encodings(COSINE).contains(&Encoding::RLE_DICTIONARY),
                "cosine stays a dictionary"
            );
            let mut got = Vec::new();
            for batch in reader.build().unwrap() {
                let batch = batch.unwrap();
                let column = |name: &str, t: &DataType| {
                    arrow_cast::cast(batch.column_by_name(name).unwrap(), t).unwrap()
                };
                let int = |name| column(name, &DataType::Int64);
                let (steps, layers, positions) = (int(STEP), int(LAYER), int(POSITION));
                let variants = column(VARIANT, &DataType::Utf8);
                let (l2, cos) = (
                    column(L2, &DataType::Float32),
                    column(COSINE, &DataType::Float32),
                );
                for r in 0..batch.num_rows() {
                    got.push((
                        steps.as_primitive::<Int64Type>().value(r),
                        layers.as_primitive::<Int64Type>().value(r),
                        positions.as_primitive::<Int64Type>().value(r),
                        variants.as_string::<i32>().value(r).to_string(),
                        l2.as_primitive::<Float32Type>().value(r),
                        cos.as_primitive::<Float32Type>().value(r),
                    ));
                }
            }
            let mut want: Vec<_> = expected
                .iter()
                .map(|(step, layer, pos, variant, l2, cos)| {
                    let f = |t: &str| t.parse::<f32>().unwrap();
                    (*step, *layer, *pos, variant.clone(), f(l2), f(cos))
                })
                .collect();
            got.sort_by(|a, b| a.partial_cmp(b).unwrap());
            want.sort_by(|a, b| a.partial_cmp(b).unwrap());
            assert_eq!(got, want, "{row_groups:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The runs of `walk_runs`, and the rows of `walk`, are the rows each row order defines
    /// (worked out here from its loops), with every cell a row and with cells that are no
    /// rows; with every cell a row, each run is a whole innermost loop.
    #[test]
    fn runs_and_walk_hold_the_rows_of_each_order() {
        let dir = std::env::temp_dir().join(format!("mi-runs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.csv");
        // 3 layers × 2 variants; prompt `a` has 4 positions, prompt `b` 5.
        let mut csv = String::from("generation_step,layer,token_masked,token_position,variant,prompt_name,l2_distance\n");
        for (prompt, n) in [("a", 4), ("b", 5)] {
            for layer in 0..3 {
                for pos in 0..n {
                    for variant in ["Full", "Attn"] {
                        csv += &format!("0,{layer},t{pos},{pos},{variant},{prompt},1.5\n");
                    }
                }
            }
        }
        std::fs::write(&path, csv).unwrap();
        let loaded = super::super::load(&[path], None, |_| {}).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let cube = &loaded.cube;
        let plan = Plan::new(&loaded, false);
        let options = ConvertOptions::default();
        let all = plan.step_cells(cube, 0, &options);
        assert!(all.present.is_none());
        assert_eq!(all.rows, 2 * 3 * 9);
        // Every third cell, and a run of four cells, are no rows.
        let cells = 2 * 3 * 9;
        let mask: Vec<bool> = (0..cells).map(|i| i % 3 != 1 && !(20..24).contains(&i)).collect();
        let some = StepCells {
            step: 0,
            rows: mask.iter().filter(|&&r| r).count() as u64,
            present: Some(mask),
        };
        // The rows of `order` by its definition: per prompt, its three loops nested as it
        // names them, outermost first; a cell that is no row left out (cells are laid out per
        // prompt, then variant, layer and position).
        let (nv, nl) = (2, 3);
        let defined = |order: RowOrder, mask: Option<&Vec<bool>>| {
            let mut rows = Vec::new();
            let mut base = 0;
            for (p, n) in [4, 5].into_iter().enumerate() {
                let mut cell = |v: usize, l: usize, pos: usize| {
                    if mask.is_none_or(|m| m[base + (v * nl + l) * n + pos]) {
                        rows.push((p, v, l, pos));
                    }
                };
                match order {
                    RowOrder::VariantLayerPosition => (0..nv).for_each(|v| (0..nl).for_each(|l| (0..n).for_each(|pos| cell(v, l, pos)))),
                    RowOrder::LayerVariantPosition => (0..nl).for_each(|l| (0..nv).for_each(|v| (0..n).for_each(|pos| cell(v, l, pos)))),
                    RowOrder::LayerPositionVariant => (0..nl).for_each(|l| (0..n).for_each(|pos| (0..nv).for_each(|v| cell(v, l, pos)))),
                    RowOrder::PositionVariantLayer => (0..n).for_each(|pos| (0..nv).for_each(|v| (0..nl).for_each(|l| cell(v, l, pos)))),
                }
                base += nv * nl * n;
            }
            rows
        };
        for order in [
            RowOrder::VariantLayerPosition,
            RowOrder::LayerVariantPosition,
            RowOrder::LayerPositionVariant,
            RowOrder::PositionVariantLayer,
        ] {
            let options = ConvertOptions { order: Some(order), ..ConvertOptions::default() };
            let inner = match order {
                RowOrder::LayerPositionVariant => |_: usize| 2,
                RowOrder::PositionVariantLayer => |_: usize| 3,
                _ => |p: usize| [4, 5][p],
            };
            for cells in [&all, &some] {
                let mut walked = Vec::new();
                plan.walk(cube, cells, &options, |p, v, l, pos| walked.push((p, v, l, pos)));
                let mut ran = Vec::new();
                plan.walk_runs(cube, cells, &options, |p, v, l, pos, along, len| {
                    assert!(len > 0);
                    if cells.present.is_none() {
                        assert_eq!(len, inner(p), "{order:?}");
                    }
                    ran.extend((0..len).map(|i| {
                        let (v, l, pos) = along.step((v, l, pos), i);
                        (p, v, l, pos)
                    }));
                });
                let want = defined(order, cells.present.as_ref());
                assert_eq!(want.len() as u64, cells.rows, "{order:?}");
                assert_eq!(ran, want, "{order:?}");
                assert_eq!(walked, want, "{order:?}");
            }
        }
    }

    #[test]
    fn rounding() {
        let r = Rounder::new(Some(4));
        assert_eq!(r.apply(1.23456), 1.2346);
        assert_eq!(r.apply(-0.00001), 0.0);
        assert!(r.apply(f32::NAN).is_nan());
        assert_eq!(Rounder::new(None).apply(1.23456), 1.23456);
    }
}
