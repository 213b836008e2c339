//! Building a [`Cube`] from Arrow record batches, whatever wrote them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, DictionaryArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Schema};

use super::{variant_order, Cube, CubeError, Metric, Prompt, Rounding, Subset};

/// The largest token position the cube accepts (positions are laid out densely from 0).
pub const MAX_POSITION: i64 = 1 << 22;
/// The most metric values (cells × metrics) a cube may hold: 1.6 GB of `f32`.
pub const MAX_CELLS: usize = 400_000_000;

/// Reorder `values` (rows of `np` values, row `i` at `i * np`) where they are, so that dense
/// row `d` holds the row `rows[d]` (`u32::MAX`: none, NaN). Each row is wanted by at most one
/// dense row; the values may hold fewer rows than `rows` (they are then extended with NaN
/// rows, which the dense rows without one take) but not rows no dense row wants.
fn reorder_rows(values: &mut Vec<f32>, rows: &[u32], np: usize) {
    let held = values.len() / np.max(1);
    debug_assert!(held <= rows.len());
    // Where each held row goes; the dense rows without a row take the added NaN rows, in order.
    let mut to = vec![usize::MAX; rows.len()];
    let mut spare = held;
    for (d, &r) in rows.iter().enumerate() {
        match r {
            u32::MAX => {
                to[spare] = d;
                spare += 1;
            }
            r => to[r as usize] = d,
        }
    }
    values.resize(rows.len() * np, f32::NAN);
    // Each cycle of the permutation: the row in hand goes to its place, and the row found there
    // is taken in hand, until the cycle comes back to where it started.
    let mut done = vec![false; rows.len()];
    let (mut hand, mut found) = (vec![0f32; np], vec![0f32; np]);
    for start in 0..rows.len() {
        if done[start] || to[start] == start {
            continue;
        }
        hand.copy_from_slice(&values[start * np..(start + 1) * np]);
        let mut at = to[start];
        while at != start {
            let place = &mut values[at * np..(at + 1) * np];
            found.copy_from_slice(place);
            place.copy_from_slice(&hand);
            std::mem::swap(&mut hand, &mut found);
            done[at] = true;
            at = to[at];
        }
        values[start * np..(start + 1) * np].copy_from_slice(&hand);
        done[start] = true;
    }
}

/// `f` of each metric's `items`, side by side on a thread each where there are threads (the
/// CLI: this is the passage from reading to writing, where nothing else runs), else in turn.
fn each_metric<T: Send>(items: Vec<T>, f: impl Fn(T) -> Float32Array + Sync) -> Vec<Float32Array> {
    #[cfg(not(target_arch = "wasm32"))]
    return std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items.into_iter().map(|item| scope.spawn(move || f(item))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    #[cfg(target_arch = "wasm32")]
    items.into_iter().map(f).collect()
}

/// Known column names.
const STEP: &str = "generation_step";
const LAYER: &str = "layer";
const POSITION: &str = "token_position";
const TOKEN: &str = "token_masked";
const VARIANT: &str = "variant";
const PROMPT: &str = "prompt_name";
const CONFIG_PROMPT: &str = "config_prompt";
/// Metrics that are listed first, in this order.
const KNOWN_METRICS: [&str; 2] = ["l2_distance", "cosine_distance"];
/// How a missing metric is listed among missing columns (not a column name: no backticks).
pub(crate) const ANY_METRIC: &str = "a numeric metric column";
/// Name of the only variant when a file has no `variant` column.
pub(crate) const DEFAULT_VARIANT: &str = "Full";

/// Which column of a file plays which role, found by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    pub step: Option<String>,
    pub layer: String,
    pub position: String,
    pub token: Option<String>,
    pub variant: Option<String>,
    pub prompt: Option<String>,
    pub config_prompt: Option<String>,
    /// Numeric metric columns, the known ones first.
    pub metrics: Vec<String>,
}

fn is_numeric(t: &DataType) -> bool {
    t.is_integer() || t.is_floating() || matches!(t, DataType::Decimal128(..))
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// Columns that writers add as an index and that are no metric.
fn is_index_column(name: &str) -> bool {
    name.is_empty()
        || name.starts_with("__index_level_")
        || name.starts_with("Unnamed: ")
        || name == "index"
}

impl ColumnMap {
    /// Find the columns of `schema`; `file` names the file in errors.
    ///
    /// Required: `layer`, `token_position` and at least one numeric metric. Everything else is
    /// optional. Names match exactly, or else ignoring ASCII case.
    pub fn from_schema(file: &str, schema: &Schema) -> Result<ColumnMap, CubeError> {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let find = |want: &str| -> Option<usize> {
            names
                .iter()
                .position(|n| *n == want)
                .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(want)))
        };
        let wrong = |i: usize, expected: &str| CubeError::WrongType {
            file: file.to_string(),
            column: names[i].to_string(),
            found: schema.field(i).data_type().to_string(),
            expected: expected.to_string(),
        };
        let int_col = |want: &str| -> Result<Option<usize>, CubeError> {
            match find(want) {
                Some(i) if is_numeric(schema.field(i).data_type()) => Ok(Some(i)),
                Some(i) => Err(wrong(i, "it must hold whole numbers")),
                None => Ok(None),
            }
        };
        let text_col = |want: &str| -> Option<usize> {
            find(want).filter(|&i| {
                let t = schema.field(i).data_type();
                is_text(t) || is_numeric(t)
            })
        };
        let step = int_col(STEP)?;
        let layer = int_col(LAYER)?;
        let position = int_col(POSITION)?;
        let token = text_col(TOKEN);
        let variant = text_col(VARIANT);
        let prompt = text_col(PROMPT);
        let config_prompt = text_col(CONFIG_PROMPT);
        let taken: Vec<usize> = [step, layer, position, token, variant, prompt, config_prompt]
            .into_iter()
            .flatten()
            .collect();
        let mut metrics: Vec<usize> = (0..names.len())
            .filter(|i| !taken.contains(i))
            .filter(|&i| is_numeric(schema.field(i).data_type()) && !is_index_column(names[i]))
            .collect();
        metrics.sort_by_key(|&i| {
            KNOWN_METRICS
                .iter()
                .position(|k| *k == names[i])
                .unwrap_or(KNOWN_METRICS.len())
        });

        let mut missing = Vec::new();
        if layer.is_none() {
            missing.push(LAYER.to_string());
        }
        if position.is_none() {
            missing.push(POSITION.to_string());
        }
        if metrics.is_empty() {
            missing.push(ANY_METRIC.to_string());
        }
        let (Some(layer), Some(position), false) = (layer, position, metrics.is_empty()) else {
            // A metric stored as text is the likeliest cause of "no metric": say so.
            if metrics.is_empty() {
                for known in KNOWN_METRICS {
                    if let Some(i) = find(known) {
                        return Err(wrong(i, "a metric must be numeric"));
                    }
                }
            }
            return Err(CubeError::MissingColumns {
                file: file.to_string(),
                missing,
                found: names.iter().map(|s| s.to_string()).collect(),
            });
        };
        let name = |i: usize| names[i].to_string();
        Ok(ColumnMap {
            step: step.map(name),
            layer: name(layer),
            position: name(position),
            token: token.map(name),
            variant: variant.map(name),
            prompt: prompt.map(name),
            config_prompt: config_prompt.map(name),
            metrics: metrics.into_iter().map(name).collect(),
        })
    }

    /// Every column name the cube needs, in no particular order (for a projection).
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = vec![self.layer.as_str(), self.position.as_str()];
        for n in [&self.step, &self.token, &self.variant, &self.prompt, &self.config_prompt].into_iter().flatten() {
            v.push(n.as_str());
        }
        v.extend(self.metrics.iter().map(|s| s.as_str()));
        v
    }
}

/// One (prompt, step, variant, layer) row of the cube while the data streams in. Its values
/// are `arena[metric][id * stride + position]` in the builder.
struct Block {
    prompt: u32,
    step: i64,
    variant: u32,
    layer: i64,
}

/// Text interned to codes, in first-seen order.
#[derive(Default)]
struct Interner {
    codes: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn code(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.codes.get(s) {
            return c;
        }
        let c = self.names.len() as u32;
        self.names.push(s.to_string());
        self.codes.insert(s.to_string(), c);
        c
    }
}

/// Whether each row of a `variant` column (`None`: the file has none) is one of `names`, read
/// as [`CubeBuilder::push_batch`] reads it (a null row is [`DEFAULT_VARIANT`], a null text the
/// empty one).
pub(crate) fn variant_is_one_of(col: Option<&ArrayRef>, rows: usize, names: &[String]) -> Result<Vec<bool>, arrow_schema::ArrowError> {
    let one_of = |v: &str| names.iter().any(|n| n == v);
    let Some(col) = col else { return Ok(vec![one_of(DEFAULT_VARIANT); rows]) };
    let d = to_dict(col)?;
    let values = d.values().as_string::<i32>();
    let value_in: Vec<bool> = (0..values.len()).map(|i| one_of(if values.is_null(i) { "" } else { values.value(i) })).collect();
    let default = one_of(DEFAULT_VARIANT);
    Ok((0..d.len()).map(|i| if d.is_valid(i) { value_in[d.keys().value(i) as usize] } else { default }).collect())
}

struct PromptAcc {
    text: Option<String>,
    /// Token code per position, -1 where unknown.
    tokens: Vec<i32>,
    /// One more than the largest position seen with data.
    n_positions: usize,
}

/// The source being read now.
struct Source {
    file: String,
    columns: ColumnMap,
    /// Global metric index of each of `columns.metrics`.
    metric_ids: Vec<usize>,
    /// Prompt used for rows without a prompt name.
    default_prompt: u32,
    /// Columns from the file's path, added to each of its batches.
    path_columns: Vec<PathColumn>,
}

/// Builds a [`Cube`] from record batches of one or more files.
///
/// Call [`begin_source`](Self::begin_source) for each file with its schema, then
/// [`push_batch`](Self::push_batch) for each of its batches, and [`finish`](Self::finish) once.
/// Rows may come in any order; a later duplicate of a cell replaces the earlier one.
pub struct CubeBuilder {
    source: Option<Source>,
    sources: Vec<String>,
    metric_names: Vec<String>,
    variants: Interner,
    prompts: Interner,
    prompt_acc: Vec<PromptAcc>,
    tokens: Interner,
    blocks: Vec<Block>,
    /// Values by global metric: `stride` positions per block, NaN where not (yet) seen.
    arena: Vec<Vec<f32>>,
    /// Positions per block in `arena`: at least one more than the largest position seen.
    stride: usize,
    /// (prompt, step, layer) → index into `group_blocks`.
    groups: HashMap<(u32, i64, i64), usize>,
    /// Block id by variant code (`u32::MAX`: none yet), per (prompt, step, layer) group.
    group_blocks: Vec<Vec<u32>>,
    rows_read: u64,
    rows_skipped: u64,
    duplicates: u64,
    /// Step of the previous row, and the steps whose run of rows has ended (the next row had
    /// another step): in files sorted by step, the steps already read whole.
    last_step: Option<i64>,
    ended_steps: std::collections::HashSet<i64>,
    /// Rows expected in all (a hint for reserving memory).
    expected_rows: u64,
    /// How metric values are rounded as they are put in (see [`CubeBuilder::with_rounding`]).
    rounding: Option<Rounding>,
}

impl Default for CubeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

// The conversions below are written out rather than done with `arrow_cast::cast`: the general
// cast kernel would add megabytes to the wasm for the few conversions the cube needs.

/// Every value of `a` converted by `cast`, its nulls kept; a value that `fits` rejects becomes
/// null. When every value fits (the usual case: CSV and JSON numbers arrive as Float64,
/// integers widen), a check and a conversion without a branch per value and no null mask built
/// row by row; otherwise arrow's `unary_opt`.
fn convert_values<I, O>(
    a: &arrow_array::PrimitiveArray<I>,
    fits: impl Fn(I::Native) -> bool,
    cast: impl Fn(I::Native) -> O::Native,
) -> arrow_array::PrimitiveArray<O>
where
    I: arrow_array::ArrowPrimitiveType,
    O: arrow_array::ArrowPrimitiveType,
{
    // (A conversion that always fits makes the check nothing.)
    if a.values().iter().fold(true, |all, &v| all & fits(v)) {
        a.unary(cast)
    } else {
        a.unary_opt(|v| fits(v).then(|| cast(v)))
    }
}

/// Converts any integer, float or decimal column to `$out`: for each kind of input, a test of
/// whether a value fits (`=>`) its cast ([`convert_values`]; a value that does not fit
/// becomes null).
macro_rules! convert_numeric {
    (
        $col:expr, $out:ty,
        |$v:ident| $int_fits:expr => $int:expr,
        |$f:ident| $float_fits:expr => $float:expr,
        |$d:ident, $scale:ident| $dec_fits:expr => $dec:expr
    ) => {{
        use arrow_array::types::*;
        let col: &dyn Array = $col;
        macro_rules! ints {
            ($t:ty) => {
                convert_values(col.as_primitive::<$t>(), |$v| $int_fits, |$v| $int)
            };
        }
        // (A conversion that always fits does not look at its value.)
        #[allow(unused_variables)]
        let out: arrow_array::PrimitiveArray<$out> = match col.data_type() {
            DataType::Int8 => ints!(Int8Type),
            DataType::Int16 => ints!(Int16Type),
            DataType::Int32 => ints!(Int32Type),
            DataType::Int64 => ints!(Int64Type),
            DataType::UInt8 => ints!(UInt8Type),
            DataType::UInt16 => ints!(UInt16Type),
            DataType::UInt32 => ints!(UInt32Type),
            DataType::UInt64 => ints!(UInt64Type),
            DataType::Float16 => convert_values(
                col.as_primitive::<Float16Type>(),
                |h| {
                    let $f = h.to_f64();
                    $float_fits
                },
                |h| {
                    let $f = h.to_f64();
                    $float
                },
            ),
            DataType::Float32 => convert_values(
                col.as_primitive::<Float32Type>(),
                |x| {
                    let $f = x as f64;
                    $float_fits
                },
                |x| {
                    let $f = x as f64;
                    $float
                },
            ),
            DataType::Float64 => {
                convert_values(col.as_primitive::<Float64Type>(), |$f| $float_fits, |$f| $float)
            }
            DataType::Decimal128(_, scale) => {
                let $scale = 10f64.powi(*scale as i32);
                convert_values(col.as_primitive::<Decimal128Type>(), |$d| $dec_fits, |$d| $dec)
            }
            other => {
                return Err(arrow_schema::ArrowError::CastError(format!(
                    "{other} is not a supported number type"
                )))
            }
        };
        Ok::<ArrayRef, arrow_schema::ArrowError>(Arc::new(out) as ArrayRef)
    }};
}

/// Whether a float truncates to an `i64` (finite, below 2^63 in magnitude with some margin).
pub(crate) fn fits_i64(f: f64) -> bool {
    f.is_finite() && f.abs() < 9.2e18
}

/// Converts any numeric column to Int64 (floats are truncated; NaN, infinities and values out of
/// range become null).
pub(crate) fn to_i64(col: &ArrayRef) -> Result<ArrayRef, arrow_schema::ArrowError> {
    if col.data_type() == &DataType::Int64 {
        return Ok(col.clone());
    }
    convert_numeric!(
        col.as_ref(),
        Int64Type,
        |v| i64::try_from(v).is_ok() => v as i64,
        |f| fits_i64(f) => f as i64,
        |d, scale| fits_i64(d as f64 / scale) => (d as f64 / scale) as i64
    )
}

/// Converts any numeric column to Float32.
fn to_f32(col: &ArrayRef) -> Result<ArrayRef, arrow_schema::ArrowError> {
    if col.data_type() == &DataType::Float32 {
        return Ok(col.clone());
    }
    convert_numeric!(
        col.as_ref(),
        Float32Type,
        |v| true => v as f32,
        |f| true => f as f32,
        |d, scale| true => (d as f64 / scale) as f32
    )
}

/// A metric column read in place as [`to_f32`] would give it: Float32 and Float64 columns
/// without a converted copy of the batch, any other number type converted once.
enum MetricValues {
    F32(Float32Array),
    F64(Float64Array),
}

impl MetricValues {
    fn new(col: &ArrayRef) -> Result<MetricValues, arrow_schema::ArrowError> {
        Ok(match col.data_type() {
            DataType::Float64 => MetricValues::F64(col.as_primitive::<Float64Type>().clone()),
            _ => MetricValues::F32(to_f32(col)?.as_primitive::<Float32Type>().clone()),
        })
    }
}

/// Pass 2 of [`CubeBuilder::push_batch`]: each row's value of one metric (`cast` to `f32`; NaN
/// for a null) to its cell of `arena` (`cell[row]`; `usize::MAX` for a skipped row), marking in
/// `repeated` (made on the first) the rows whose cell already held a value.
fn scatter<T: arrow_array::ArrowPrimitiveType>(
    arena: &mut [f32],
    cell: &[usize],
    values: &arrow_array::PrimitiveArray<T>,
    cast: impl Fn(T::Native) -> f32,
    repeated: &mut Vec<bool>,
) {
    let v = values.values();
    let nulls = values.nulls();
    for (row, &c) in cell.iter().enumerate() {
        if c == usize::MAX {
            continue;
        }
        let slot = &mut arena[c];
        if !slot.is_nan() {
            if repeated.is_empty() {
                *repeated = vec![false; cell.len()];
            }
            repeated[row] = true;
        }
        *slot = if nulls.is_none_or(|b| b.is_valid(row)) { cast(v[row]) } else { f32::NAN };
    }
}

/// The text of a text column's rows (Utf8, LargeUtf8 or Utf8View), or `None` for other types.
fn text_rows(col: &dyn Array) -> Option<Box<dyn Iterator<Item = Option<&str>> + '_>> {
    Some(match col.data_type() {
        DataType::Utf8 => Box::new(col.as_string::<i32>().iter()),
        DataType::LargeUtf8 => Box::new(col.as_string::<i64>().iter()),
        DataType::Utf8View => Box::new(col.as_string_view().iter()),
        _ => return None,
    })
}

/// Converts any text (or integer) column to a dictionary of Utf8 with i32 keys.
fn to_dict(col: &ArrayRef) -> Result<DictionaryArray<Int32Type>, arrow_schema::ArrowError> {
    // A dictionary column (pandas categoricals, polars, Parquet dictionary pages read with the
    // Arrow schema hint) keeps its keys: only the key width and the value type are converted,
    // never the rows re-hashed.
    if let DataType::Dictionary(key, value) = col.data_type() {
        if key.as_ref() == &DataType::Int32 && value.as_ref() == &DataType::Utf8 {
            return Ok(col.as_dictionary::<Int32Type>().clone());
        }
        let dict = col.as_any_dictionary();
        let keys = convert_numeric!(
            dict.keys(),
            Int32Type,
            |v| i32::try_from(v).is_ok() => v as i32,
            |f| true => f as i32,
            |d, scale| true => (d as f64 / scale) as i32
        )?;
        let values: ArrayRef = match dict.values().data_type() {
            DataType::Utf8 => dict.values().clone(),
            _ => Arc::new(to_dict(dict.values())?.downcast_dict::<StringArray>().map_or_else(
                || StringArray::from(Vec::<Option<&str>>::new()),
                |d| d.into_iter().collect(),
            )),
        };
        return DictionaryArray::try_new(keys.as_primitive::<Int32Type>().clone(), values);
    }
    let mut builder = arrow_array::builder::StringDictionaryBuilder::<Int32Type>::new();
    match text_rows(col.as_ref()) {
        Some(rows) => {
            for row in rows {
                builder.append_option(row);
            }
        }
        None => {
            // Token ids or other numbers: their decimal text.
            let ints = to_i64(col)?;
            for v in ints.as_primitive::<Int64Type>().iter() {
                builder.append_option(v.map(|v| v.to_string()));
            }
        }
    }
    Ok(builder.finish())
}

/// Maps each value of a dictionary to an interned code.
fn dict_codes(d: &DictionaryArray<Int32Type>, interner: &mut Interner) -> Vec<u32> {
    let values = d.values().as_string::<i32>();
    (0..values.len())
        .map(|i| interner.code(if values.is_null(i) { "" } else { values.value(i) }))
        .collect()
}

fn file_stem(file: &str) -> String {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    match base.rfind('.') {
        Some(i) if i > 0 => base[..i].to_string(),
        _ => base.to_string(),
    }
}

/// The folder name of a Hive-style partition whose value is null (pyarrow, Spark).
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// The partition keys in the folders of a file's path, as pyarrow, polars, DuckDB and Spark
/// write a dataset partitioned by a column (and `mask-impact convert --partition-by`):
/// `results/generation_step=3/part-0.parquet` gives `[("generation_step", "3")]`, values
/// percent-decoded (`None`: the null partition). They are the `KEY=VALUE` folders that hold
/// the file, outermost first; a folder of another name above them is the dataset, whose name
/// comes second (`results`), if the path names it.
pub fn hive_partitions(path: &str) -> (Vec<(String, Option<String>)>, Option<String>) {
    let mut folders: Vec<&str> = path.split(['/', '\\']).collect();
    folders.pop(); // the file's own name
    let mut keys = Vec::new();
    while let Some((key, value)) = folders.last().and_then(|f| f.split_once('=')).filter(|(k, _)| !k.is_empty()) {
        let value = (value != HIVE_NULL).then(|| percent_decoded(value));
        keys.push((percent_decoded(key), value));
        folders.pop();
    }
    keys.reverse();
    let dataset = folders.last().filter(|f| !keys.is_empty() && !f.is_empty()).map(|f| percent_decoded(f));
    (keys, dataset)
}

/// `text` with each `%XX` replaced by its byte (as Hive escapes a partition value).
fn percent_decoded(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A column a file gets from its path: a partition key (see [`hive_partitions`]) that names a
/// column the cube knows and the file itself lacks, its value the same in every row.
#[derive(Debug, Clone)]
struct PathColumn {
    name: String,
    value: PathValue,
}

#[derive(Debug, Clone)]
enum PathValue {
    Int(Option<i64>),
    Text(Option<String>),
}

impl PathColumn {
    /// The path columns of `file`, whose own columns are `schema` and whose path holds the
    /// partition keys `keys` ([`hive_partitions`]).
    fn of(file: &str, keys: Vec<(String, Option<String>)>, schema: &Schema) -> Result<Vec<PathColumn>, CubeError> {
        let has = |name: &str| schema.fields().iter().any(|f| f.name().eq_ignore_ascii_case(name));
        let mut columns: Vec<PathColumn> = Vec::new();
        for (key, value) in keys {
            let Some(&role) = [STEP, LAYER, POSITION, TOKEN, VARIANT, PROMPT, CONFIG_PROMPT]
                .iter()
                .find(|r| r.eq_ignore_ascii_case(&key))
            else {
                continue;
            };
            if has(&key) {
                continue;
            }
            let value = if [STEP, LAYER, POSITION].contains(&role) {
                let number = value.as_deref().map(|v| {
                    v.trim().parse::<i64>().map_err(|_| CubeError::OutOfRange {
                        file: file.to_string(),
                        message: format!(
                            "its folder `{key}={v}` gives `{key}` to its rows, but `{v}` is not a whole number"
                        ),
                    })
                });
                PathValue::Int(number.transpose()?)
            } else {
                PathValue::Text(value)
            };
            // A key named twice (`step=1/step=2/f.parquet`): the innermost folder wins.
            columns.retain(|c| !c.name.eq_ignore_ascii_case(&key));
            columns.push(PathColumn { name: key, value });
        }
        Ok(columns)
    }

    fn field(&self) -> Field {
        let data_type = match self.value {
            PathValue::Int(_) => DataType::Int64,
            PathValue::Text(_) => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        };
        Field::new(&self.name, data_type, true)
    }

    /// The column of `rows` rows.
    fn array(&self, rows: usize) -> ArrayRef {
        match &self.value {
            PathValue::Int(Some(v)) => Arc::new(Int64Array::from_value(*v, rows)),
            PathValue::Text(Some(v)) => Arc::new(DictionaryArray::<Int32Type>::new(
                Int32Array::from_value(0, rows),
                Arc::new(StringArray::from(vec![v.as_str()])),
            )),
            PathValue::Int(None) | PathValue::Text(None) => arrow_array::new_null_array(self.field().data_type(), rows),
        }
    }
}

/// `schema` with the fields of `path_columns` after its own.
fn with_path_fields(schema: &Schema, path_columns: &[PathColumn]) -> Schema {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(path_columns.iter().map(PathColumn::field));
    Schema::new(fields)
}

impl CubeBuilder {
    pub fn new() -> CubeBuilder {
        CubeBuilder {
            source: None,
            sources: Vec::new(),
            metric_names: Vec::new(),
            variants: Interner::default(),
            prompts: Interner::default(),
            prompt_acc: Vec::new(),
            tokens: Interner::default(),
            blocks: Vec::new(),
            arena: Vec::new(),
            stride: 0,
            groups: HashMap::new(),
            group_blocks: Vec::new(),
            rows_read: 0,
            rows_skipped: 0,
            duplicates: 0,
            last_step: None,
            ended_steps: std::collections::HashSet::new(),
            expected_rows: 0,
            rounding: None,
        }
    }

    /// Round every metric value to `rounding` as it is put in, before it becomes `f32` (see
    /// [`Rounding`]): `convert` does, the viewer does not. Text decoders feeding this builder
    /// then keep metric values as float64 ([`CubeBuilder::wants_wide_metrics`]).
    pub fn with_rounding(mut self, rounding: Option<Rounding>) -> CubeBuilder {
        self.rounding = rounding;
        self
    }

    /// How metric values are rounded as they are put in.
    pub fn rounding(&self) -> Option<Rounding> {
        self.rounding
    }

    /// Whether metric values should reach [`CubeBuilder::push_batch`] as read (float64 where
    /// the file has them so), rather than already narrowed to `f32`: true when the builder
    /// rounds them.
    pub fn wants_wide_metrics(&self) -> bool {
        self.rounding.is_some()
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Rows skipped because their layer or position was null.
    pub fn rows_skipped(&self) -> u64 {
        self.rows_skipped
    }

    /// Expect about `rows` more rows (the Parquet footer tells): memory is reserved once
    /// instead of grown step by step.
    pub fn expect_rows(&mut self, rows: u64) {
        self.expected_rows = self.rows_read + rows;
    }

    /// Rows expected in all, when the file said (Parquet), else 0.
    pub fn expected_rows(&self) -> u64 {
        self.expected_rows
    }

    /// Whether the rows of generation step `step` were followed by rows of another step: in a
    /// file sorted by step (as writers write them), that step has been read whole and a view
    /// of it can be shown before the rest of the file is read.
    pub fn step_passed(&self, step: i64) -> bool {
        self.ended_steps.contains(&step)
    }

    /// Records that every row of generation step `step` has been read, whatever rows follow:
    /// the source knows it (a Parquet reader from the row groups' statistics).
    pub fn mark_step_read(&mut self, step: i64) {
        self.ended_steps.insert(step);
    }

    /// Whether the rows of some step were followed by rows of another step (see
    /// [`step_passed`](Self::step_passed)).
    pub fn any_step_passed(&self) -> bool {
        !self.ended_steps.is_empty()
    }

    /// Start reading a file with this schema. Returns the columns it will use.
    ///
    /// A file in a partitioned dataset (`results/generation_step=3/part-0.parquet`) gets the
    /// columns the cube knows that it lacks from its path's partition folders (see
    /// [`hive_partitions`]), as pyarrow reads a dataset; the map names them too (a reader that
    /// projects the file's columns by these names finds no such column in the file).
    pub fn begin_source(&mut self, file: &str, schema: &Schema) -> Result<ColumnMap, CubeError> {
        let (keys, dataset) = hive_partitions(file);
        let path_columns = PathColumn::of(file, keys, schema)?;
        let columns = if path_columns.is_empty() {
            ColumnMap::from_schema(file, schema)?
        } else {
            ColumnMap::from_schema(file, &with_path_fields(schema, &path_columns))?
        };
        let metric_ids = columns
            .metrics
            .iter()
            .map(|m| match self.metric_names.iter().position(|n| n == m) {
                Some(i) => i,
                None => {
                    self.metric_names.push(m.clone());
                    self.arena.push(vec![f32::NAN; self.blocks.len() * self.stride]);
                    self.metric_names.len() - 1
                }
            })
            .collect();
        // A dataset's files (columns from their path) are all one prompt unless they say
        // otherwise: the dataset's name.
        let dataset = dataset.filter(|_| !path_columns.is_empty());
        let default_prompt = self.prompt_code(&dataset.unwrap_or_else(|| file_stem(file)));
        self.sources.push(file.to_string());
        self.source = Some(Source {
            file: file.to_string(),
            columns: columns.clone(),
            metric_ids,
            default_prompt,
            path_columns,
        });
        Ok(columns)
    }

    fn prompt_code(&mut self, name: &str) -> u32 {
        let c = self.prompts.code(name);
        if c as usize == self.prompt_acc.len() {
            self.prompt_acc.push(PromptAcc {
                text: None,
                tokens: Vec::new(),
                n_positions: 0,
            });
        }
        c
    }

    /// Add the rows of one batch of the current source.
    pub fn push_batch(&mut self, batch: &RecordBatch) -> Result<(), CubeError> {
        let Some(source) = self.source.take() else {
            return Err(CubeError::OutOfRange {
                file: "(unknown)".into(),
                message: "push_batch called before begin_source".into(),
            });
        };
        let result = if source.path_columns.is_empty() {
            self.push_batch_of(&source, batch)
        } else {
            // The batch's own schema, which may differ from the one the source began with in
            // the types the builder accepts alike (a text decoder's Float64 layer column comes
            // as Int64).
            let schema = Arc::new(with_path_fields(&batch.schema(), &source.path_columns));
            let mut columns = batch.columns().to_vec();
            columns.extend(source.path_columns.iter().map(|c| c.array(batch.num_rows())));
            RecordBatch::try_new(schema, columns)
                .map_err(|e| CubeError::OutOfRange {
                    file: source.file.clone(),
                    message: format!("its rows do not match its first rows' columns: {e}"),
                })
                .and_then(|b| self.push_batch_of(&source, &b))
        };
        self.source = Some(source);
        result
    }

    fn push_batch_of(&mut self, src: &Source, batch: &RecordBatch) -> Result<(), CubeError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let file = &src.file;
        let cols = &src.columns;
        let column = |name: &str| -> Result<&ArrayRef, CubeError> {
            batch.column_by_name(name).ok_or_else(|| CubeError::MissingColumns {
                file: file.clone(),
                missing: vec![name.to_string()],
                found: batch.schema().fields().iter().map(|f| f.name().clone()).collect(),
            })
        };
        let cast_err = |name: &str, e: arrow_schema::ArrowError| CubeError::WrongType {
            file: file.clone(),
            column: name.to_string(),
            found: batch
                .column_by_name(name)
                .map(|c| c.data_type().to_string())
                .unwrap_or_default(),
            expected: format!("its values could not be converted: {e}"),
        };
        let ints = |name: &str| -> Result<ArrayRef, CubeError> {
            to_i64(column(name)?).map_err(|e| cast_err(name, e))
        };
        let dict = |name: &str| -> Result<DictionaryArray<Int32Type>, CubeError> {
            to_dict(column(name)?).map_err(|e| cast_err(name, e))
        };

        let layer = ints(&cols.layer)?;
        let layer = layer.as_primitive::<Int64Type>();
        let position = ints(&cols.position)?;
        let position = position.as_primitive::<Int64Type>();
        let step = cols.step.as_deref().map(ints).transpose()?;
        let step = step.as_ref().map(|s| s.as_primitive::<Int64Type>());

        let variant = cols.variant.as_deref().map(dict).transpose()?;
        let variant_codes = variant.as_ref().map(|d| dict_codes(d, &mut self.variants));
        let default_variant = self.variants.code(DEFAULT_VARIANT);

        let prompt = cols.prompt.as_deref().map(dict).transpose()?;
        let prompt_codes: Option<Vec<u32>> = prompt.as_ref().map(|d| {
            let values = d.values().as_string::<i32>();
            (0..values.len())
                .map(|i| {
                    if values.is_null(i) || values.value(i).is_empty() {
                        src.default_prompt
                    } else {
                        self.prompt_code(values.value(i))
                    }
                })
                .collect()
        });
        let config = cols.config_prompt.as_deref().map(dict).transpose()?;
        let token = cols.token.as_deref().map(dict).transpose()?;
        // Global token code of each dictionary value of this batch, interned on first use.
        let mut token_codes: Vec<i32> = vec![-1; token.as_ref().map_or(0, |t| t.values().len())];

        let metrics: Vec<MetricValues> = cols
            .metrics
            .iter()
            .map(|m| MetricValues::new(column(m)?).map_err(|e| cast_err(m, e)))
            .collect::<Result<_, CubeError>>()?;

        // Positions are checked up front, and the arena widened once for the whole batch.
        let pos_v = position.values();
        let mut batch_positions = 0usize;
        for row in 0..n {
            if position.is_valid(row) && layer.is_valid(row) {
                let pos = pos_v[row];
                if !(0..=MAX_POSITION).contains(&pos) {
                    return Err(CubeError::OutOfRange {
                        file: file.clone(),
                        message: format!(
                            "`{}` is {pos} in data row {}; positions must be between 0 and {MAX_POSITION}",
                            cols.position,
                            self.rows_read + row as u64 + 1
                        ),
                    });
                }
                batch_positions = batch_positions.max(pos as usize + 1);
            }
        }
        if batch_positions > self.stride {
            // Grow by a quarter at least, so that files sorted by position are not re-laid
            // out for every batch.
            let wider = if self.stride == 0 { batch_positions } else { batch_positions.max(self.stride + self.stride / 4) };
            self.widen(wider);
        }
        let stride = self.stride;

        let layer_v = layer.values();
        let key_nulls = layer.null_count() > 0 || position.null_count() > 0;
        let step_v = step.map(|s| (s.values(), s.nulls()));
        let variant_v = variant.as_ref().map(|d| (d.keys().values(), d.keys().nulls()));
        let prompt_v = prompt.as_ref().map(|d| (d.keys().values(), d.keys().nulls()));
        let valid = |nulls: Option<&NullBuffer>, row: usize| nulls.is_none_or(|b| b.is_valid(row));

        // Pass 1: the arena index of every row (usize::MAX for skipped rows).
        let mut cell: Vec<usize> = Vec::with_capacity(n);
        let every_key = !key_nulls
            && step.is_none_or(|s| s.null_count() == 0)
            && variant.as_ref().is_none_or(|d| d.keys().null_count() == 0)
            && prompt.as_ref().is_none_or(|d| d.keys().null_count() == 0);
        if every_key {
            // Every row has its keys: the rows are taken in runs of one (prompt, step, layer),
            // found and set up once per run (its group, its prompt's positions); within a
            // run only the variant and the position change. (Row by row, as below, the
            // seed-scale CSV's rows took 16% longer to put into the cube.)
            let variant_keys = variant.as_ref().map(|d| d.keys().values());
            let prompt_keys = prompt.as_ref().map(|d| d.keys().values());
            let steps = step.map(|s| s.values());
            let mut row = 0;
            while row < n {
                let s = steps.map_or(0, |v| v[row]);
                let l = layer_v[row];
                let prompt_key = prompt_keys.map(|k| k[row]);
                let mut end = row + 1;
                while end < n
                    && layer_v[end] == l
                    && steps.is_none_or(|v| v[end] == s)
                    && prompt_keys.is_none_or(|k| Some(k[end]) == prompt_key)
                {
                    end += 1;
                }
                let p = match (prompt_key, &prompt_codes) {
                    (Some(k), Some(codes)) => codes[k as usize],
                    _ => src.default_prompt,
                };
                self.enter_step(s);
                let group = self.group_of((p, s, l));
                let positions = &pos_v[row..end];
                let widest = positions.iter().copied().max().unwrap_or(0) as usize + 1;
                let acc = &mut self.prompt_acc[p as usize];
                acc.n_positions = acc.n_positions.max(widest);
                if acc.tokens.len() < widest {
                    acc.tokens.resize(widest, -1);
                }
                for (r, &pos) in (row..end).zip(positions) {
                    let pos = pos as usize;
                    let v = match (variant_keys, &variant_codes) {
                        (Some(keys), Some(codes)) => codes[keys[r] as usize],
                        _ => default_variant,
                    };
                    if self.prompt_acc[p as usize].tokens[pos] < 0 {
                        self.note_token(p, pos, r, token.as_ref(), &mut token_codes);
                    }
                    let b = self.block_in(group, Block { prompt: p, step: s, variant: v, layer: l }, stride);
                    cell.push(b * stride + pos);
                }
                for r in row..end {
                    if self.prompt_acc[p as usize].text.is_some() {
                        break;
                    }
                    self.note_text(p, r, config.as_ref());
                }
                row = end;
            }
        }
        // Any row may lack a key: row by row.
        let general_rows = if every_key { 0..0 } else { 0..n };
        let mut last_group: Option<((u32, i64, i64), usize)> = None;
        let mut last_block: Option<((u32, i64, u32, i64), usize)> = None;
        let mut prev_block = last_block;
        for row in general_rows {
            if key_nulls && (layer.is_null(row) || position.is_null(row)) {
                self.rows_skipped += 1;
                cell.push(usize::MAX);
                continue;
            }
            let l = layer_v[row];
            let pos = pos_v[row] as usize;
            let s = match step_v {
                Some((v, nulls)) if valid(nulls, row) => v[row],
                _ => 0,
            };
            self.enter_step(s);
            let v = match (variant_v, &variant_codes) {
                (Some((keys, nulls)), Some(codes)) if valid(nulls, row) => codes[keys[row] as usize],
                _ => default_variant,
            };
            let p = match (prompt_v, &prompt_codes) {
                (Some((keys, nulls)), Some(codes)) if valid(nulls, row) => codes[keys[row] as usize],
                _ => src.default_prompt,
            };

            // Token text and prompt text, first value wins.
            let acc = &mut self.prompt_acc[p as usize];
            if acc.n_positions <= pos {
                acc.n_positions = pos + 1;
            }
            if acc.tokens.len() <= pos {
                acc.tokens.resize(pos + 1, -1);
            }
            if acc.tokens[pos] < 0 {
                self.note_token(p, pos, row, token.as_ref(), &mut token_codes);
            }
            self.note_text(p, row, config.as_ref());

            // Find the block of (p, s, v, l): the last two blocks and the (p, s, l) group are
            // cached between rows, so the row orders writers use (variant fastest, as Full
            // and Attn alternate, or position fastest) stay cheap.
            let block_key = (p, s, v, l);
            let block_id = match (last_block, prev_block) {
                (Some((k, b)), _) if k == block_key => b,
                (_, Some((k, b))) if k == block_key => {
                    std::mem::swap(&mut last_block, &mut prev_block);
                    b
                }
                _ => {
                    let key = (p, s, l);
                    let group = match last_group {
                        Some((k, g)) if k == key => g,
                        _ => {
                            let g = self.group_of(key);
                            last_group = Some((key, g));
                            g
                        }
                    };
                    let b = self.block_in(group, Block { prompt: p, step: s, variant: v, layer: l }, stride);
                    prev_block = last_block;
                    last_block = Some((block_key, b));
                    b
                }
            };
            cell.push(block_id * stride + pos);
        }

        // Pass 2: scatter each metric's values to their cells.
        let mut repeated: Vec<bool> = Vec::new();
        for (m, values) in metrics.iter().enumerate() {
            let arena = &mut self.arena[src.metric_ids[m]];
            match values {
                MetricValues::F32(a) => match self.rounding {
                    None => scatter(arena, &cell, a, |v| v, &mut repeated),
                    Some(r) => scatter(arena, &cell, a, |v| r.to_f32(v as f64), &mut repeated),
                },
                MetricValues::F64(a) => match self.rounding {
                    None => scatter(arena, &cell, a, |v| v as f32, &mut repeated),
                    Some(r) => scatter(arena, &cell, a, |v| r.to_f32(v), &mut repeated),
                },
            }
        }
        self.duplicates += repeated.iter().filter(|&&r| r).count() as u64;
        self.rows_read += n as u64;
        Ok(())
    }

    /// A row of step `s` comes: the step before it, if another, has ended.
    #[inline]
    fn enter_step(&mut self, s: i64) {
        if self.last_step != Some(s) {
            if let Some(prev) = self.last_step {
                self.ended_steps.insert(prev);
            }
            self.last_step = Some(s);
        }
    }

    /// The index into `group_blocks` of the rows of (prompt, step, layer) `key`, made when new.
    fn group_of(&mut self, key: (u32, i64, i64)) -> usize {
        let next = self.group_blocks.len();
        let g = *self.groups.entry(key).or_insert(next);
        if g == next {
            self.group_blocks.push(Vec::new());
        }
        g
    }

    /// The id of `block`, of the rows of `group`: its variant's block there, made when new.
    #[inline]
    fn block_in(&mut self, group: usize, block: Block, stride: usize) -> usize {
        match self.group_blocks[group].get(block.variant as usize) {
            Some(&b) if b != u32::MAX => b as usize,
            _ => self.new_block(group, block, stride),
        }
    }

    /// A new block in `group` for `block` (its variant's slot there empty), with room in the
    /// arena: its id.
    fn new_block(&mut self, group: usize, block: Block, stride: usize) -> usize {
        let v = block.variant as usize;
        let id = self.blocks.len() as u32;
        let ids = &mut self.group_blocks[group];
        if ids.len() <= v {
            ids.resize(v + 1, u32::MAX);
        }
        ids[v] = id;
        self.blocks.push(block);
        for values in &mut self.arena {
            if values.capacity() == values.len() && self.expected_rows > self.rows_read {
                // Room for the rows still expected, assuming dense positions.
                let more = (self.expected_rows - self.rows_read) as usize;
                values.reserve(more.div_ceil(stride.max(1)) * stride);
            }
            values.resize(values.len() + stride, f32::NAN);
        }
        id as usize
    }

    /// The token of `pos` in prompt `p` (not known yet) from row `row` of `token`, if it has
    /// one; `token_codes` holds the cube's code of each of the batch's token texts (-1: not
    /// looked up yet).
    fn note_token(
        &mut self,
        p: u32,
        pos: usize,
        row: usize,
        token: Option<&DictionaryArray<Int32Type>>,
        token_codes: &mut [i32],
    ) {
        let Some(t) = token.filter(|t| !t.is_null(row)) else {
            return;
        };
        let k = t.keys().value(row) as usize;
        if token_codes[k] < 0 {
            token_codes[k] = self.tokens.code(t.values().as_string::<i32>().value(k)) as i32;
        }
        self.prompt_acc[p as usize].tokens[pos] = token_codes[k];
    }

    /// The text of prompt `p` from row `row` of `config`, if it has none yet (the first wins).
    #[inline]
    fn note_text(&mut self, p: u32, row: usize, config: Option<&DictionaryArray<Int32Type>>) {
        let acc = &mut self.prompt_acc[p as usize];
        if acc.text.is_none() {
            if let Some(c) = config.filter(|c| !c.is_null(row)) {
                let k = c.keys().value(row) as usize;
                acc.text = Some(c.values().as_string::<i32>().value(k).to_string());
            }
        }
    }

    /// Re-lays the arena out with `stride` positions per block.
    fn widen(&mut self, stride: usize) {
        let old = self.stride;
        for values in &mut self.arena {
            let mut wide = vec![f32::NAN; self.blocks.len() * stride];
            if old > 0 {
                for (from, to) in values.chunks_exact(old).zip(wide.chunks_exact_mut(stride)) {
                    to[..old].copy_from_slice(from);
                }
            }
            *values = wide;
        }
        self.stride = stride;
    }

    /// Lay the data out densely and return the cube. Where the blocks of the arena are the dense
    /// layout's rows in another order (one prompt, a block as wide as its positions: the usual
    /// case), each metric's arena is reordered where it is and becomes the cube's values, rather
    /// than copied into fresh memory: the seed-scale CSV's 2 × 15 MB copy took 12-15 ms of the
    /// convert (mostly the page faults of the new memory), and held both layouts at once.
    pub fn finish(mut self) -> Result<Cube, CubeError> {
        let arena = std::mem::take(&mut self.arena);
        self.cube_of(&Subset::default(), Some(arena))
    }

    /// The cube of the rows read so far, leaving the builder as it is (to show a first view
    /// while the rest of a file is read).
    pub fn snapshot(&self) -> Result<Cube, CubeError> {
        self.snapshot_of(&Subset::default())
    }

    /// The variants of the rows read so far, in first-seen order.
    pub fn variant_names(&self) -> Vec<String> {
        let mut seen = vec![false; self.variants.names.len()];
        for b in &self.blocks {
            seen[b.variant as usize] = true;
        }
        self.variants.names.iter().zip(seen).filter(|(_, s)| *s).map(|(n, _)| n.clone()).collect()
    }

    /// The metric columns found, in the cube's order.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    /// [`snapshot`](Self::snapshot) with only the variants and metrics of `subset`: what an
    /// early view shows, at a fraction of the cost (a 34-variant step laid out, sent and copied
    /// whole took tens of milliseconds for one picture). The steps, layers, prompts and
    /// positions are those of every row read.
    pub fn snapshot_of(&self, subset: &Subset) -> Result<Cube, CubeError> {
        self.cube_of(subset, None)
    }

    /// The cube of `subset`, its values laid out from the builder's arena, or from `owned` (the
    /// arena, taken by [`finish`](Self::finish)), reordered in place where it can be.
    fn cube_of(&self, subset: &Subset, owned: Option<Vec<Vec<f32>>>) -> Result<Cube, CubeError> {
        let file = self.sources.join(", ");
        if self.blocks.is_empty() {
            return Err(CubeError::Empty { file });
        }
        let keep_variant = |code: u32| subset.keeps_variant(&self.variants.names[code as usize]);
        let keep_metric = |name: &String| subset.keeps_metric(name);
        let mut steps: Vec<i64> = self.blocks.iter().map(|b| b.step).collect();
        steps.sort_unstable();
        steps.dedup();
        let mut layers: Vec<i64> = self.blocks.iter().map(|b| b.layer).collect();
        layers.sort_unstable();
        layers.dedup();
        let mut used_variants: Vec<u32> = self.blocks.iter().map(|b| b.variant).filter(|&v| keep_variant(v)).collect();
        used_variants.sort_unstable();
        used_variants.dedup();
        let mut variant_names: Vec<&str> = used_variants
            .iter()
            .map(|&c| self.variants.names[c as usize].as_str())
            .collect();
        variant_names.sort_by(|a, b| variant_order(a, b));
        let mut variant_slot = vec![usize::MAX; self.variants.names.len()];
        for (i, name) in variant_names.iter().enumerate() {
            variant_slot[self.variants.codes[*name] as usize] = i;
        }
        let variants: Vec<String> = variant_names.iter().map(|s| s.to_string()).collect();

        // Prompts that have data, in first-seen order, with their position counts.
        let n_prompt_codes = self.prompts.names.len();
        let mut n_positions = vec![0usize; n_prompt_codes];
        let mut has_data = vec![false; n_prompt_codes];
        for b in &self.blocks {
            let p = b.prompt as usize;
            has_data[p] = true;
            n_positions[p] = self.prompt_acc[p].n_positions;
        }
        let (ns, nv, nl) = (steps.len(), variants.len(), layers.len());
        let mut prompt_slot = vec![usize::MAX; n_prompt_codes];
        let mut offsets = Vec::new();
        let mut total = 0usize;
        for p in 0..n_prompt_codes {
            if !has_data[p] {
                continue;
            }
            n_positions[p] = n_positions[p].max(self.prompt_acc[p].tokens.len());
            prompt_slot[p] = offsets.len();
            offsets.push(total);
            total = ns
                .checked_mul(nv)
                .and_then(|x| x.checked_mul(nl))
                .and_then(|x| x.checked_mul(n_positions[p]))
                .and_then(|x| x.checked_add(total))
                .unwrap_or(usize::MAX);
        }
        let kept: Vec<usize> = (0..self.metric_names.len()).filter(|&m| keep_metric(&self.metric_names[m])).collect();
        let n_metrics = kept.len();
        if total.saturating_mul(n_metrics.max(1)) > MAX_CELLS {
            return Err(CubeError::OutOfRange {
                file,
                message: format!(
                    "the data spans {ns} steps × {nv} variants × {nl} layers × up to {} positions = {total} cells per metric, more than the viewer can hold ({MAX_CELLS} values in all)",
                    n_positions.iter().max().unwrap_or(&0)
                ),
            });
        }

        // The block of each dense row, prompt after prompt (`u32::MAX`: no data, NaN).
        let step_index = |s: i64| steps.binary_search(&s).unwrap_or(0);
        let layer_index = |l: i64| layers.binary_search(&l).unwrap_or(0);
        let mut prompt_rows: Vec<(usize, Vec<u32>)> = Vec::new();
        for p in 0..n_prompt_codes {
            if has_data[p] {
                prompt_rows.push((n_positions[p], vec![u32::MAX; ns * nv * nl]));
            }
        }
        for (id, b) in self.blocks.iter().enumerate() {
            let slot = variant_slot[b.variant as usize];
            if slot == usize::MAX {
                continue;
            }
            let row = (step_index(b.step) * nv + slot) * nl
                + layer_index(b.layer);
            prompt_rows[prompt_slot[b.prompt as usize]].1[row] = id as u32;
        }
        // The arena reordered where it is (see `finish`): every metric, one prompt, blocks as
        // wide as its positions.
        let in_place = kept.len() == self.metric_names.len()
            && prompt_rows.len() == 1
            && prompt_rows[0].0 == self.stride
            && prompt_rows[0].1.iter().filter(|&&id| id != u32::MAX).count() == self.blocks.len();
        let laid_out: Vec<Float32Array> = match owned {
            Some(owned) if in_place => {
                let (np, rows) = &prompt_rows[0];
                each_metric(owned, |mut values: Vec<f32>| {
                    reorder_rows(&mut values, rows, *np);
                    super::metric_values(values)
                })
            }
            owned => {
                // Each metric's values in the dense layout, written once, front to back (no
                // fill first).
                let arena: &[Vec<f32>] = owned.as_deref().unwrap_or(&self.arena);
                let stride = self.stride;
                each_metric(kept.iter().map(|&m| &arena[m]).collect(), |arena: &Vec<f32>| {
                    let mut values = Vec::with_capacity(total);
                    for (np, rows) in &prompt_rows {
                        for &id in rows {
                            match id {
                                u32::MAX => values.resize(values.len() + np, f32::NAN),
                                id => {
                                    let at = id as usize * stride;
                                    values.extend_from_slice(&arena[at..at + np]);
                                }
                            }
                        }
                    }
                    super::metric_values(values)
                })
            }
        };
        let metrics = kept
            .iter()
            .map(|&m| self.metric_names[m].clone())
            .zip(laid_out)
            .map(|(name, values)| Metric { name, values })
            .collect();

        let token_values: ArrayRef = Arc::new(StringArray::from_iter_values(self.tokens.names.iter()));
        let mut prompts = Vec::new();
        for p in 0..n_prompt_codes {
            if !has_data[p] {
                continue;
            }
            let acc = &self.prompt_acc[p];
            let keys: Int32Array = (0..n_positions[p])
                .map(|i| acc.tokens.get(i).copied().filter(|&k| k >= 0))
                .collect();
            let tokens = DictionaryArray::try_new(keys, token_values.clone())
                .map_err(|e| CubeError::Ipc(e.to_string()))?;
            prompts.push(Prompt {
                name: self.prompts.names[p].clone(),
                text: acc.text.clone(),
                tokens,
                cell_offset: offsets[prompt_slot[p]],
            });
        }
        Ok(Cube {
            sources: self.sources.clone(),
            rows_read: self.rows_read,
            duplicates: self.duplicates,
            steps,
            layers,
            variants,
            prompts,
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::record_batch;
    use arrow_schema::Field;

    fn rows_of(values: &[f32], np: usize) -> Vec<Vec<Option<f32>>> {
        values.chunks(np).map(|r| r.iter().map(|v| (!v.is_nan()).then_some(*v)).collect()).collect()
    }

    #[test]
    fn rows_reordered_in_place_land_where_the_dense_layout_wants_them() {
        // Rows A B C of 2 values; dense rows: C, none, A, B (worked out by hand).
        let mut values = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        reorder_rows(&mut values, &[2, u32::MAX, 0, 1], 2);
        assert_eq!(
            rows_of(&values, 2),
            vec![vec![Some(5.0), Some(6.0)], vec![None, None], vec![Some(1.0), Some(2.0)], vec![Some(3.0), Some(4.0)]]
        );
        // Already in place: unchanged.
        let mut values = vec![1.0, 2.0, 3.0];
        reorder_rows(&mut values, &[0, 1, 2], 1);
        assert_eq!(values, vec![1.0, 2.0, 3.0]);
        // Two cycles: (0 1) swapped, (2 3 4) rotated.
        let mut values = vec![10.0, 11.0, 12.0, 13.0, 14.0];
        reorder_rows(&mut values, &[1, 0, 4, 2, 3], 1);
        assert_eq!(values, vec![11.0, 10.0, 14.0, 12.0, 13.0]);
    }

    mod reorder {
        use super::{reorder_rows, rows_of};
        use proptest::prelude::*;

        proptest! {
            /// Reordering in place gives what copying each dense row's block into fresh memory
            /// gives (the layout `snapshot` makes): any order of the held rows, with empty
            /// dense rows anywhere.
            #[test]
            fn rows_reordered_in_place_match_a_copy(
                (order, gaps) in (0usize..24).prop_flat_map(|held| (
                    Just((0..held as u32).collect::<Vec<u32>>()).prop_shuffle(),
                    proptest::collection::vec(0..=held, 0..6),
                )),
                np in 1usize..5,
            ) {
                let held = order.len();
                let mut rows = order.clone();
                for &g in gaps.iter().rev() {
                    rows.insert(g.min(rows.len()), u32::MAX);
                }
                // Held row i has the values i * 100 + j.
                let values: Vec<f32> = (0..held * np).map(|k| ((k / np) * 100 + k % np) as f32).collect();
                let mut copied = Vec::new();
                for &r in &rows {
                    match r {
                        u32::MAX => copied.extend(std::iter::repeat_n(f32::NAN, np)),
                        r => copied.extend_from_slice(&values[r as usize * np..(r as usize + 1) * np]),
                    }
                }
                let mut in_place = values.clone();
                reorder_rows(&mut in_place, &rows, np);
                prop_assert_eq!(rows_of(&in_place, np), rows_of(&copied, np));
            }
        }
    }

    fn build(batches: &[RecordBatch]) -> Result<Cube, CubeError> {
        let mut b = CubeBuilder::new();
        b.begin_source("t.parquet", &batches[0].schema())?;
        for batch in batches {
            b.push_batch(batch)?;
        }
        b.finish()
    }

    mod any_rows {
        use super::*;
        use proptest::prelude::*;

        /// One row: (prompt, step, variant, layer, position), its value.
        type Row = ((usize, i64, usize, i64, usize), f32);
        const VARIANTS: [&str; 4] = ["Full", "Attn", "Head_0", "Head_1"];

        /// Distinct cells of a small grid with values, in writer order (step, layer, position,
        /// variant: long runs of one step and layer) or shuffled.
        fn rows() -> impl Strategy<Value = Vec<Row>> {
            let cell = (0..2usize, 0..3i64, 0..4usize, 0..3i64, 0..6usize);
            (proptest::collection::btree_map(cell, 0..1000u16, 1..120), any::<bool>())
                .prop_flat_map(|(cells, sorted)| {
                    let mut rows: Vec<Row> = cells.into_iter().map(|(c, v)| (c, f32::from(v) / 8.0)).collect();
                    rows.sort_by_key(|&((p, s, v, l, pos), _)| (p, s, l, pos, v));
                    let n = rows.len();
                    (Just(rows), if sorted { Just((0..n).collect::<Vec<_>>()).boxed() } else { Just((0..n).collect::<Vec<_>>()).prop_shuffle().boxed() })
                })
                .prop_map(|(rows, order)| order.into_iter().map(|i| rows[i]).collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
            /// Whatever the row order and batches, and whether some rows leave their step out
            /// (step 0 then: the rows go the general way), every value lands in its cell and
            /// every position gets its token; checked against the rows themselves.
            #[test]
            fn every_row_lands_in_its_cell(rows in rows(), cuts in proptest::collection::vec(0..120usize, 0..4), null_steps in any::<bool>()) {
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % rows.len()).chain([0, rows.len()]).collect();
                cuts.sort_unstable();
                cuts.dedup();
                let batches: Vec<RecordBatch> = cuts
                    .windows(2)
                    .map(|w| {
                        let part = &rows[w[0]..w[1]];
                        let step: Vec<Option<i64>> = part.iter().map(|&((_, s, ..), _)| (s != 0 || !null_steps).then_some(s)).collect();
                        RecordBatch::try_from_iter([
                            ("prompt_name", Arc::new(StringArray::from_iter_values(part.iter().map(|r| format!("p{}", r.0 .0)))) as ArrayRef),
                            ("config_prompt", Arc::new(StringArray::from_iter_values(part.iter().map(|r| format!("text {}", r.0 .0))))),
                            ("generation_step", Arc::new(Int64Array::from(step))),
                            ("layer", Arc::new(Int64Array::from_iter_values(part.iter().map(|r| r.0 .3)))),
                            ("token_position", Arc::new(Int64Array::from_iter_values(part.iter().map(|r| r.0 .4 as i64)))),
                            ("variant", Arc::new(StringArray::from_iter_values(part.iter().map(|r| VARIANTS[r.0 .2])))),
                            ("token_masked", Arc::new(StringArray::from_iter_values(part.iter().map(|r| format!("t{}.{}", r.0 .0, r.0 .4))))),
                            ("l2_distance", Arc::new(Float32Array::from_iter_values(part.iter().map(|r| r.1)))),
                        ])
                        .unwrap()
                    })
                    .collect();
                let cube = build(&batches).unwrap();
                prop_assert_eq!(cube.rows_read, rows.len() as u64);
                let index = |all: &[i64], x: i64| all.iter().position(|&a| a == x).unwrap();
                let mut expected = 0;
                for &((p, s, v, l, pos), value) in &rows {
                    let prompt = cube.prompts.iter().position(|q| q.name == format!("p{p}")).unwrap();
                    prop_assert_eq!(cube.prompts[prompt].text.clone(), Some(format!("text {p}")));
                    prop_assert_eq!(cube.prompts[prompt].token(pos).map(str::to_string), Some(format!("t{p}.{pos}")));
                    let variant = cube.variants.iter().position(|n| n == VARIANTS[v]).unwrap();
                    let at = cube.cell(prompt, index(&cube.steps, s), variant, index(&cube.layers, l));
                    prop_assert_eq!(cube.value(0, at, pos), Some(value), "row {:?}", (p, s, v, l, pos));
                    expected += 1;
                }
                // No value anywhere else.
                let values = cube.metrics[0].values.values().iter().filter(|v| !v.is_nan()).count();
                prop_assert_eq!(values, expected);
            }
        }
    }

    #[test]
    fn float64_numbers_convert_as_their_values_say() {
        use arrow_array::Float64Array;
        let got = |values: Vec<Option<f64>>| -> Vec<Option<i64>> {
            let col: ArrayRef = Arc::new(Float64Array::from(values));
            to_i64(&col).unwrap().as_primitive::<Int64Type>().iter().collect()
        };
        // In range, with a null: truncated, the null kept.
        assert_eq!(got(vec![Some(0.0), Some(3.9), None, Some(-2.5)]), vec![Some(0), Some(3), None, Some(-2)]);
        // NaN, infinities and values past i64 become null; the others still convert.
        assert_eq!(
            got(vec![Some(7.0), Some(f64::NAN), Some(1e19), Some(f64::NEG_INFINITY), None]),
            vec![Some(7), None, None, None, None]
        );
        let col: ArrayRef = Arc::new(Float64Array::from(vec![Some(0.1), None, Some(1e40)]));
        let f: Vec<Option<f32>> = to_f32(&col).unwrap().as_primitive::<Float32Type>().iter().collect();
        assert_eq!(f, vec![Some(0.1f32), None, Some(f32::INFINITY)]);
    }

    #[test]
    fn other_number_types_convert_as_their_values_say() {
        use arrow_array::{Decimal128Array, Float32Array, Int8Array, UInt64Array};
        let ints = |col: ArrayRef| -> Vec<Option<i64>> {
            to_i64(&col).unwrap().as_primitive::<Int64Type>().iter().collect()
        };
        let floats = |col: ArrayRef| -> Vec<Option<f32>> {
            to_f32(&col).unwrap().as_primitive::<Float32Type>().iter().collect()
        };
        // Narrow integers widen, nulls kept.
        let narrow: ArrayRef = Arc::new(Int8Array::from(vec![Some(-3), None, Some(7)]));
        assert_eq!(ints(narrow.clone()), vec![Some(-3), None, Some(7)]);
        assert_eq!(floats(narrow), vec![Some(-3.0), None, Some(7.0)]);
        // A u64 past i64 becomes null; the others still convert.
        let wide: ArrayRef = Arc::new(UInt64Array::from(vec![Some(5), Some(u64::MAX), None]));
        assert_eq!(ints(wide.clone()), vec![Some(5), None, None]);
        assert_eq!(floats(wide), vec![Some(5.0), Some(1.8446744e19), None]);
        // Decimals: 123.45, -0.5 and 7 (scale 2), truncated to integers.
        let dec: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(12345), Some(-50), None, Some(700)])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        assert_eq!(ints(dec.clone()), vec![Some(123), Some(0), None, Some(7)]);
        assert_eq!(floats(dec), vec![Some(123.45), Some(-0.5), None, Some(7.0)]);
        // Half floats: NaN is no integer, but stays a float value.
        let single: ArrayRef = Arc::new(Float32Array::from(vec![1.5, f32::NAN]));
        let half = arrow_cast::cast(&single, &DataType::Float16).unwrap();
        assert_eq!(ints(half.clone()), vec![Some(1), None]);
        let f = floats(half);
        assert_eq!(f[0], Some(1.5));
        assert!(f[1].is_some_and(f32::is_nan));
    }

    /// Float64 keys and metrics (what the CSV and JSON decoders give) reach the cube with the
    /// values `to_i64` and `to_f32` give (checked above; the metrics are read in place):
    /// truncated, and a NaN, null, infinite or too large layer or position skips its row; a
    /// step without a value is 0.
    #[test]
    fn float64_keys_and_metrics_reach_the_cube_as_converted() {
        let nan = f64::NAN;
        let batch = record_batch!(
            ("generation_step", Float64, [Some(1.0), Some(1.0), Some(1.0), Some(1.0), Some(1.0), Some(nan), None]),
            ("layer", Float64, [Some(0.0), Some(1.7), Some(nan), None, Some(1e30), Some(2.0), Some(f64::INFINITY)]),
            ("token_position", Float64, [Some(0.0), Some(0.0), Some(1.0), Some(1.0), Some(1.0), Some(2.9), Some(0.0)]),
            ("l2_distance", Float64, [Some(1.5), Some(2.5), Some(3.0), Some(3.0), Some(3.0), Some(0.1), Some(9.0)]),
            ("kl", Float64, [Some(1e40), None, Some(3.0), Some(3.0), Some(3.0), Some(4.0), Some(9.0)])
        )
        .unwrap();
        let mut b = CubeBuilder::new();
        b.begin_source("t.csv", &batch.schema()).unwrap();
        b.push_batch(&batch).unwrap();
        assert_eq!(b.rows_skipped(), 4, "NaN, null, 1e30 and infinite layers");
        let cube = b.finish().unwrap();
        assert_eq!(cube.steps, [0, 1]);
        assert_eq!(cube.layers, [0, 1, 2]);
        let (l2, kl) = (0, 1);
        // Step 1 (index 1), layer 0 and layer 1 (1.7), position 0.
        assert_eq!(cube.value(l2, cube.cell(0, 1, 0, 0), 0), Some(1.5));
        assert_eq!(cube.value(kl, cube.cell(0, 1, 0, 0), 0), Some(f32::INFINITY));
        assert_eq!(cube.value(l2, cube.cell(0, 1, 0, 1), 0), Some(2.5));
        assert_eq!(cube.value(kl, cube.cell(0, 1, 0, 1), 0), None);
        // The NaN step is step 0; position 2.9 is 2; 0.1 as f32.
        assert_eq!(cube.value(l2, cube.cell(0, 0, 0, 2), 2), Some(0.1f32));
        assert_eq!(cube.value(kl, cube.cell(0, 0, 0, 2), 2), Some(4.0));
    }

    /// With a rounding, metric values are rounded before they become `f32`, Float64 and Float32
    /// sources alike; without, they are narrowed as read. Expectations by hand (and as
    /// `numpy.round(x, 4)` then `astype("float32")` gives them).
    #[test]
    fn metric_values_are_rounded_before_they_narrow() {
        let x = 12.147_349_957_180_065; // as f32: 12.147350311…, which rounds to 12.1474
        let wide = record_batch!(
            ("layer", Int64, [0, 0, 0, 0]),
            ("token_position", Int64, [0, 1, 2, 3]),
            ("l2_distance", Float64, [Some(x), Some(0.03125), None, Some(-0.00001)])
        )
        .unwrap();
        let narrow = record_batch!(
            ("layer", Int64, [1, 1]),
            ("token_position", Int64, [0, 1]),
            ("l2_distance", Float32, [Some(1.23456f32), Some(0.03125f32)])
        )
        .unwrap();
        let values = |rounding: Option<Rounding>| {
            let mut b = CubeBuilder::new().with_rounding(rounding);
            assert_eq!(b.wants_wide_metrics(), rounding.is_some());
            for (file, batch) in [("a.csv", &wide), ("b.parquet", &narrow)] {
                b.begin_source(file, &batch.schema()).unwrap();
                b.push_batch(batch).unwrap();
            }
            let cube = b.finish().unwrap();
            // Each file without a prompt column is a prompt of its own.
            assert_eq!(cube.prompts.len(), 2);
            let at = |file: usize, pos: usize| cube.value(0, cube.cell(file, 0, 0, file), pos);
            (0..4).map(|p| at(0, p)).chain((0..2).map(|p| at(1, p))).collect::<Vec<_>>()
        };
        assert_eq!(
            values(Some(Rounding::new(4))),
            [Some(12.1473f32), Some(0.0312), None, Some(0.0), Some(1.2346), Some(0.0312)]
        );
        assert_eq!(
            values(None),
            [Some(x as f32), Some(0.03125), None, Some(-0.00001), Some(1.23456), Some(0.03125)]
        );
    }

    #[test]
    fn hive_partition_folders_are_read_from_paths() {
        let some = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        assert_eq!(
            hive_partitions("/data/run/generation_step=3/part-0.parquet"),
            (vec![some("generation_step", "3")], Some("run".to_string()))
        );
        // Nested, Windows separators, percent escapes, the null partition; the folders' order
        // kept.
        assert_eq!(
            hive_partitions(r"C:\out\res\prompt_name=a%2Fb%20c\generation_step=__HIVE_DEFAULT_PARTITION__\x.parquet"),
            (
                vec![some("prompt_name", "a/b c"), ("generation_step".to_string(), None)],
                Some("res".to_string())
            )
        );
        // A relative path from the dataset's own folder (a dropped folder's files); a file name
        // with `=` is no folder; a `KEY=VALUE` folder above the dataset is not one of its
        // partitions; no partition folders at all.
        assert_eq!(hive_partitions("generation_step=0/part-0.parquet"), (vec![some("generation_step", "0")], None));
        assert_eq!(hive_partitions("/d/a=b.parquet"), (vec![], None));
        assert_eq!(hive_partitions("/x/lr=0.1/res/step=2/f.csv"), (vec![some("step", "2")], Some("res".to_string())));
        assert_eq!(hive_partitions("results.parquet"), (vec![], None));
        // `%` not followed by two hex digits stays as it is.
        assert_eq!(percent_decoded("5%_x%4"), "5%_x%4");
    }

    /// Files of a dataset partitioned by step (no step column of their own) get their step
    /// from their folder, as pyarrow's `read_table(folder)` gives it; the dataset's name is
    /// their prompt. Unknown keys are not columns (`seed=3` is no metric), a file's own column
    /// wins over its folder, and a step folder that is no number is an error naming both.
    #[test]
    fn partitioned_files_take_their_step_from_their_folder() {
        let part = |l2: [f64; 2]| {
            record_batch!(("layer", Int64, [0, 0]), ("token_position", Int64, [0, 1]), ("l2_distance", Float64, l2.to_vec())).unwrap()
        };
        let mut b = CubeBuilder::new();
        for (file, l2) in [
            ("/x/seed=3/res/generation_step=1/part-0.parquet", [1.0, 2.0]),
            ("/x/seed=3/res/generation_step=0/part-0.parquet", [3.0, 4.0]),
        ] {
            let batch = part(l2);
            let columns = b.begin_source(file, &batch.schema()).unwrap();
            assert_eq!(columns.step.as_deref(), Some("generation_step"));
            assert_eq!(columns.metrics, ["l2_distance"]);
            b.push_batch(&batch).unwrap();
        }
        let cube = b.finish().unwrap();
        assert_eq!(cube.steps, [0, 1]);
        assert_eq!(cube.prompts.len(), 1);
        assert_eq!(cube.prompts[0].name, "res");
        let at = |step: usize, pos: usize| cube.value(0, cube.cell(0, step, 0, 0), pos);
        assert_eq!([at(0, 0), at(0, 1), at(1, 0), at(1, 1)], [Some(3.0), Some(4.0), Some(1.0), Some(2.0)]);

        // The file's own step column, and a prompt from the folder.
        let own = record_batch!(
            ("generation_step", Int64, [5]),
            ("layer", Int64, [0]),
            ("token_position", Int64, [0]),
            ("l2_distance", Float64, [1.0])
        )
        .unwrap();
        let mut b = CubeBuilder::new();
        b.begin_source("d/prompt_name=hair/generation_step=9/f.parquet", &own.schema()).unwrap();
        b.push_batch(&own).unwrap();
        let cube = b.finish().unwrap();
        assert_eq!(cube.steps, [5]);
        assert_eq!(cube.prompts[0].name, "hair");

        // A batch whose types differ from the schema the source began with, as a text
        // decoder's (Float64 columns in the schema, Int64 keys in its batches).
        let wide = record_batch!(("layer", Float64, [0.0]), ("token_position", Float64, [0.0]), ("l2_distance", Float64, [2.5])).unwrap();
        let narrow = record_batch!(("layer", Int64, [0]), ("token_position", Int64, [1]), ("l2_distance", Float64, [3.5])).unwrap();
        let mut b = CubeBuilder::new();
        b.begin_source("ds/generation_step=4/part-0.csv", &wide.schema()).unwrap();
        b.push_batch(&narrow).unwrap();
        let cube = b.finish().unwrap();
        assert_eq!((cube.steps.as_slice(), cube.value(0, cube.cell(0, 0, 0, 0), 1)), (&[4][..], Some(3.5)));

        let batch = part([1.0, 2.0]);
        let err = CubeBuilder::new().begin_source("d/generation_step=two/f.parquet", &batch.schema()).unwrap_err().to_string();
        assert!(err.starts_with("d/generation_step=two/f.parquet: ") && err.contains("`generation_step=two`"), "{err}");
        // Without partition folders a file's stem is still its prompt.
        let mut b = CubeBuilder::new();
        b.begin_source("/x/seed=3/run.parquet", &batch.schema()).unwrap();
        b.push_batch(&batch).unwrap();
        assert_eq!(b.finish().unwrap().prompts[0].name, "run");
    }

    #[test]
    fn missing_columns_are_listed() {
        let batch = record_batch!(("layer", Int64, [1]), ("variant", Utf8, ["Full"])).unwrap();
        let err = build(&[batch]).unwrap_err().to_string();
        assert!(err.starts_with("t.parquet: missing required column(s) `token_position`, a numeric metric column."), "{err}");
        assert!(err.contains("Found columns: `layer`, `variant`"), "{err}");
        // A file of hundreds of columns (a table read the wrong way round): the first 20 are
        // named, the others counted.
        let many: Vec<String> = (0..400).map(|i| format!("row {i}")).collect();
        let err = CubeError::MissingColumns { file: "t.json".into(), missing: vec!["layer".into()], found: many }.to_string();
        assert!(err.contains("`row 18`, `row 19` and 380 more. Needed"), "{err}");
        assert!(!err.contains("`row 20`"), "{err}");
    }

    #[test]
    fn text_metric_is_named() {
        let batch = record_batch!(
            ("layer", Int64, [1]),
            ("token_position", Int64, [1]),
            ("l2_distance", Utf8, ["abc"])
        )
        .unwrap();
        let err = build(&[batch]).unwrap_err().to_string();
        assert!(err.contains("column `l2_distance` has type Utf8, but a metric must be numeric"), "{err}");
    }

    #[test]
    fn dense_layout_with_gaps_and_any_order() {
        // Two steps, two variants, two layers; position 2 missing in one row; rows shuffled.
        let batch = record_batch!(
            ("generation_step", Int8, [1, 0, 0, 1, 0]),
            ("layer", UInt16, [3, 3, 5, 3, 3]),
            ("token_position", Int32, [3, 0, 1, 0, 3]),
            ("variant", Utf8, ["Head_10", "Full", "Full", "Head_2", "Full"]),
            ("token_masked", Utf8, ["c", "<s>", "a", "<s>", "c"]),
            ("l2_distance", Float64, [Some(4.0), Some(1.0), Some(2.0), None, Some(f64::NAN)]),
            ("kl", Int32, [1, 2, 3, 4, 5])
        )
        .unwrap();
        let cube = build(&[batch]).unwrap();
        assert_eq!(cube.steps, [0, 1]);
        assert_eq!(cube.layers, [3, 5]);
        assert_eq!(cube.variants, ["Full", "Head_2", "Head_10"]);
        assert_eq!(cube.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["l2_distance", "kl"]);
        let p = &cube.prompts[0];
        assert_eq!(p.name, "t");
        assert_eq!(p.n_positions(), 4);
        assert_eq!(p.token(0), Some("<s>"));
        assert_eq!(p.token(2), None);
        assert_eq!(p.token(3), Some("c"));
        let l2 = 0;
        // step 0, Full, layer 3: pos 0 = 1.0, pos 3 = NaN → missing, pos 1/2 missing.
        let at = cube.cell(0, 0, 0, 0);
        assert_eq!(cube.value(l2, at, 0), Some(1.0));
        assert_eq!(cube.value(l2, at, 1), None);
        assert_eq!(cube.value(l2, at, 3), None);
        assert_eq!(cube.value(1, at, 3), Some(5.0));
        // step 0, Full, layer 5: pos 1 = 2.0
        assert_eq!(cube.value(l2, cube.cell(0, 0, 0, 1), 1), Some(2.0));
        // step 1, Head_10, layer 3: pos 3 = 4.0
        assert_eq!(cube.value(l2, cube.cell(0, 1, 2, 0), 3), Some(4.0));
        // step 1, Head_2, layer 3: pos 0 is null → missing, but kl there = 4.
        assert_eq!(cube.value(l2, cube.cell(0, 1, 1, 0), 0), None);
        assert_eq!(cube.value(1, cube.cell(0, 1, 1, 0), 0), Some(4.0));
        assert_eq!(cube.rows_read, 5);
        // Null bitmap agrees with NaN.
        let m = &cube.metrics[0].values;
        assert_eq!(m.null_count(), m.values().iter().filter(|v| v.is_nan()).count());
    }

    #[test]
    fn optional_columns_default() {
        let batch = record_batch!(
            ("layer", Int64, [0, 1]),
            ("token_position", Int64, [0, 0]),
            ("cosine_distance", Float32, [0.5, 0.25])
        )
        .unwrap();
        let cube = build(&[batch]).unwrap();
        assert_eq!(cube.steps, [0]);
        assert_eq!(cube.variants, ["Full"]);
        assert_eq!(cube.prompts[0].token(0), None);
        assert_eq!(cube.value(0, cube.cell(0, 0, 0, 1), 0), Some(0.25));
    }

    #[test]
    fn prompts_have_own_positions() {
        let batch = record_batch!(
            ("prompt_name", Utf8, ["a", "b", "b"]),
            ("config_prompt", Utf8, ["text a", "text b", "text b"]),
            ("layer", Int64, [0, 0, 0]),
            ("token_position", Int64, [1, 0, 4]),
            ("l2_distance", Float32, [1.0, 2.0, 3.0])
        )
        .unwrap();
        let cube = build(&[batch]).unwrap();
        assert_eq!(cube.prompts.len(), 2);
        assert_eq!(cube.prompts[0].name, "a");
        assert_eq!(cube.prompts[0].n_positions(), 2);
        assert_eq!(cube.prompts[1].n_positions(), 5);
        assert_eq!(cube.prompts[1].text.as_deref(), Some("text b"));
        assert_eq!(cube.value(0, cube.cell(1, 0, 0, 0), 4), Some(3.0));
        assert_eq!(cube.value(0, cube.cell(0, 0, 0, 0), 1), Some(1.0));
    }

    #[test]
    fn empty_and_negative() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("layer", DataType::Int64, true),
            Field::new("token_position", DataType::Int64, true),
            Field::new("l2_distance", DataType::Float32, true),
        ]));
        let err = build(&[RecordBatch::new_empty(schema)]).unwrap_err().to_string();
        assert_eq!(err, "t.parquet: the file holds no data rows");
        let batch = record_batch!(
            ("layer", Int64, [0]),
            ("token_position", Int64, [-1]),
            ("l2_distance", Float32, [1.0])
        )
        .unwrap();
        let err = build(&[batch]).unwrap_err().to_string();
        assert!(err.contains("`token_position` is -1 in data row 1"), "{err}");
    }
}
