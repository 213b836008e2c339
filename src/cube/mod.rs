//! The [`Cube`]: a compact, columnar, dense store of one result set.
//!
//! A result file is a long table with one row per (prompt, generation step, variant, layer,
//! token position). The cube keeps the metric values dense, laid out as
//!
//! ```text
//! prompt → step → variant → layer → position
//! ```
//!
//! so that one heatmap row (all positions of one layer) is one contiguous slice, and any cell is
//! found by arithmetic, without a per-row key. Each metric is one arrow `Float32Array`; a cell
//! that the data does not have (or holds null or NaN) is NaN in the values and null in the
//! validity bitmap: "no data", never zero.
//!
//! Axes (steps, layers, variants) are shared by all prompts; each prompt has its own positions
//! (`0..n_positions`, every position up to the largest one seen) and token texts, held as a
//! dictionary-encoded string array (image tokens repeat hundreds of times).
//!
//! ```
//! use mask_impact::cube::{Cube, CubeBuilder};
//! use arrow_array::{record_batch, RecordBatch};
//!
//! let batch: RecordBatch = record_batch!(
//!     ("layer", Int64, [0, 0, 1, 1]),
//!     ("token_position", Int64, [0, 1, 0, 1]),
//!     ("l2_distance", Float32, [Some(1.0), Some(2.0), Some(3.0), None])
//! ).unwrap();
//! let mut builder = CubeBuilder::new();
//! builder.begin_source("example.parquet", &batch.schema()).unwrap();
//! builder.push_batch(&batch).unwrap();
//! let cube: Cube = builder.finish().unwrap();
//! let l2 = cube.metric_index("l2_distance").unwrap();
//! let at = cube.cell(0, 0, 0, 1);
//! assert_eq!(cube.value(l2, at, 0), Some(3.0));
//! assert_eq!(cube.value(l2, at, 1), None); // missing, not zero
//! ```

mod builder;
mod ipc;

pub use builder::{ColumnMap, CubeBuilder, MAX_CELLS, MAX_POSITION};
pub(crate) use builder::{fits_i64, to_i64 as numbers_as_i64, variant_is_one_of};

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, DictionaryArray, Float32Array};

/// What can go wrong while building or reading a cube. Messages are written for the person
/// holding the file.
#[derive(Debug, thiserror::Error)]
pub enum CubeError {
    /// Required columns are missing.
    #[error(
        "{file}: missing required column(s) {}. Found columns: {}. Needed: `layer`, `token_position` and at least one numeric metric column (e.g. `l2_distance`)",
        list(missing),
        list(found)
    )]
    MissingColumns {
        file: String,
        missing: Vec<String>,
        found: Vec<String>,
    },
    /// A column has a type that cannot hold what it must.
    #[error("{file}: column `{column}` has type {found}, but {expected}")]
    WrongType {
        file: String,
        column: String,
        found: String,
        expected: String,
    },
    /// A value is out of the range the cube supports.
    #[error("{file}: {message}")]
    OutOfRange { file: String, message: String },
    /// The sources held no rows.
    #[error("{file}: the file holds no data rows")]
    Empty { file: String },
    /// The serialised form is damaged.
    #[error("cannot read the transferred cube: {0}")]
    Ipc(String),
}

/// Names listed in a message at most; the rest are counted.
const LISTED_NAMES: usize = 20;

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".to_string();
    }
    let mut listed = names
        .iter()
        .take(LISTED_NAMES)
        .map(|n| if n == builder::ANY_METRIC { n.clone() } else { format!("`{n}`") })
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED_NAMES {
        listed.push_str(&format!(" and {} more", names.len() - LISTED_NAMES));
    }
    listed
}

/// One prompt of a result set: its own positions and tokens.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// `prompt_name` from the file; the file's stem when the file has no such column.
    pub name: String,
    /// `config_prompt` (the prompt text), when the file has it.
    pub text: Option<String>,
    /// Token text of each position `0..n_positions`; null where the data has none.
    pub tokens: DictionaryArray<Int32Type>,
    /// Where this prompt's cells start in the metric arrays.
    pub cell_offset: usize,
}

impl Prompt {
    /// Number of token positions (the largest position seen + 1).
    pub fn n_positions(&self) -> usize {
        self.tokens.len()
    }

    /// The token text at `position`, if the data has one.
    pub fn token(&self, position: usize) -> Option<&str> {
        if position >= self.tokens.len() || self.tokens.is_null(position) {
            return None;
        }
        let key = self.tokens.keys().value(position) as usize;
        Some(self.tokens.values().as_string::<i32>().value(key))
    }
}

/// Some of a cube's variants and metrics: what an early view shows
/// ([`ViewState::early_view_subset`](crate::view::ViewState::early_view_subset)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subset {
    /// The variants kept; `None`: every variant.
    pub variants: Option<Vec<String>>,
    /// The metrics kept; `None`: every metric.
    pub metrics: Option<Vec<String>>,
}

impl Subset {
    /// Whether the subset keeps the variant `name`.
    pub fn keeps_variant(&self, name: &str) -> bool {
        self.variants.as_ref().is_none_or(|v| v.iter().any(|k| k == name))
    }

    /// Whether the subset keeps the metric `name`.
    pub fn keeps_metric(&self, name: &str) -> bool {
        self.metrics.as_ref().is_none_or(|m| m.iter().any(|k| k == name))
    }
}

/// One metric column (e.g. `l2_distance`): dense values, NaN/null where there is no data.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub values: Float32Array,
}

/// A metric's dense values as its Arrow array, NaN cells null. Most results have a value in
/// every cell: a gap is looked for first (a loop the compiler vectorises), and the validity
/// bitmap built only when there is one.
pub(crate) fn metric_values(values: Vec<f32>) -> Float32Array {
    let gaps = values
        .chunks(256)
        .any(|c| c.iter().fold(false, |gap, v| gap | v.is_nan()));
    let nulls = gaps.then(|| {
        arrow_buffer::NullBuffer::new(arrow_buffer::BooleanBuffer::collect_bool(values.len(), |i| {
            !values[i].is_nan()
        }))
    });
    Float32Array::new(values.into(), nulls)
}

/// Metric values rounded to a number of decimal places, as the seed note's pandas recipe
/// rounds them (`Series.round(d)`, which is NumPy's `round`: `x × 10^d` rounded to the
/// nearest integer, ties to even, then divided by `10^d`, in float64), before they become
/// `f32`. A value read as float64 (CSV, JSON, a DOUBLE column) is rounded before it is
/// narrowed: narrowing first and rounding the `f32` would round twice and can end one unit of
/// the last decimal away (12.14734995… → 12.147350311… → 12.1474, where pandas gives 12.1473).
/// An `f32` value is rounded as its float64 widening; pandas would round a float32 column in
/// float32 arithmetic, whose product `x × 10^d` is itself rounded to 24 bits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rounding {
    /// `10^d`.
    scale: f64,
}

impl Rounding {
    /// Rounding to `decimals` places.
    pub fn new(decimals: u32) -> Rounding {
        Rounding {
            scale: 10f64.powi(decimals as i32),
        }
    }

    /// `x` rounded; NaN, infinities and values too large to scale as they are, and a value
    /// rounding to zero +0.0 (a -0.0 reads as a surprise in spreadsheets).
    #[inline]
    pub fn apply(&self, x: f64) -> f64 {
        let y = x * self.scale;
        if !y.is_finite() {
            return x;
        }
        let r = round_ties_even(y) / self.scale;
        if r == 0.0 {
            0.0
        } else {
            r
        }
    }

    /// `x` rounded, then narrowed to `f32`.
    #[inline]
    pub fn to_f32(&self, x: f64) -> f32 {
        self.apply(x) as f32
    }

    /// The number `m` of units of `10^-d` that `x` rounds to: [`to_f32`](Self::to_f32) of
    /// `x` is [`of_units`](Self::of_units) of `m`. `None` where `x × 10^d` is not finite or
    /// is 2^51 or more in magnitude.
    #[inline]
    pub fn units(&self, x: f64) -> Option<i64> {
        let y = x * self.scale;
        (y.abs() < 2_251_799_813_685_248.0).then(|| round_ties_even(y) as i64)
    }

    /// The value of `units` units of `10^-d`, as [`to_f32`](Self::to_f32) gives it.
    #[inline]
    pub fn of_units(&self, units: i64) -> f32 {
        (units as f64 / self.scale) as f32
    }
}

/// `y` rounded to an integer, ties to even. Below 2^51 in magnitude, adding and subtracting
/// 1.5 × 2^52 does it in two instructions (the sum's unit in the last place is 1, and IEEE
/// rounding is to nearest, ties to even); `f64::round_ties_even` is a library call on the
/// baseline x86-64 target.
#[inline]
fn round_ties_even(y: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 × 2^52
    if y.abs() < 2_251_799_813_685_248.0 {
        // 2^51
        (y + SHIFT) - SHIFT
    } else {
        y.round_ties_even()
    }
}

/// Coordinates of one heatmap row: a (prompt, step, variant, layer) as indexes into the axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowAt {
    pub prompt: usize,
    pub step: usize,
    pub variant: usize,
    pub layer: usize,
}

/// The compact columnar store of one loaded result set. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Cube {
    /// Names of the files it was read from.
    pub sources: Vec<String>,
    /// Number of data rows read.
    pub rows_read: u64,
    /// Rows that repeated a (step, prompt, variant, layer, position) cell already seen: the
    /// later value is kept.
    pub duplicates: u64,
    /// Generation steps, ascending.
    pub steps: Vec<i64>,
    /// Layers, ascending.
    pub layers: Vec<i64>,
    /// Variants: `Full`, `Attn`, `Head_0`…`Head_N` (numeric order), then any others.
    pub variants: Vec<String>,
    /// Prompts in the order first seen.
    pub prompts: Vec<Prompt>,
    /// Metrics: `l2_distance`, `cosine_distance` first, then other numeric columns.
    pub metrics: Vec<Metric>,
}

impl Cube {
    /// Index of a metric by name.
    pub fn metric_index(&self, name: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m.name == name)
    }

    /// Index of a variant by name.
    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v == name)
    }

    /// Index of a step value.
    pub fn step_index(&self, step: i64) -> Option<usize> {
        self.steps.binary_search(&step).ok()
    }

    /// Index of a layer value.
    pub fn layer_index(&self, layer: i64) -> Option<usize> {
        self.layers.binary_search(&layer).ok()
    }

    /// Index of a prompt by name.
    pub fn prompt_index(&self, name: &str) -> Option<usize> {
        self.prompts.iter().position(|p| p.name == name)
    }

    /// Shorthand for a [`RowAt`].
    pub fn cell(&self, prompt: usize, step: usize, variant: usize, layer: usize) -> RowAt {
        RowAt {
            prompt,
            step,
            variant,
            layer,
        }
    }

    /// Offset of the first cell of a row in the metric arrays.
    fn row_offset(&self, at: RowAt) -> usize {
        let p = &self.prompts[at.prompt];
        let rows_before =
            (at.step * self.variants.len() + at.variant) * self.layers.len() + at.layer;
        p.cell_offset + rows_before * p.n_positions()
    }

    /// The values of one row (positions `0..n_positions` of the prompt): NaN where no data.
    ///
    /// # Panics
    /// When an index in `at` is out of range of the axes.
    pub fn row(&self, metric: usize, at: RowAt) -> &[f32] {
        let start = self.row_offset(at);
        let n = self.prompts[at.prompt].n_positions();
        &self.metrics[metric].values.values()[start..start + n]
    }

    /// One cell's value, `None` where the data has none (missing, null or NaN).
    pub fn value(&self, metric: usize, at: RowAt, position: usize) -> Option<f32> {
        let row = self.row(metric, at);
        row.get(position).copied().filter(|v| !v.is_nan())
    }

    /// Per metric, the cells whose value is infinite (the views give them the top colour and
    /// leave them out of the colour scale).
    pub fn infinite_values(&self) -> Vec<u64> {
        self.metrics
            .iter()
            .map(|m| m.values.values().iter().filter(|v| v.is_infinite()).count() as u64)
            .collect()
    }

    /// Total number of cells per metric.
    pub fn n_cells(&self) -> usize {
        self.metrics.first().map_or(0, |m| m.values.len())
    }

    /// Bytes held by the cube's arrays (metrics and tokens).
    pub fn memory_bytes(&self) -> usize {
        let metrics: usize = self
            .metrics
            .iter()
            .map(|m| m.values.get_array_memory_size())
            .sum();
        let tokens: usize = self
            .prompts
            .iter()
            .map(|p| p.tokens.get_array_memory_size())
            .sum();
        metrics + tokens
    }

    /// Serialise to bytes (Arrow IPC streams) to move the cube from the decode worker to the
    /// page. See [`Cube::from_ipc_bytes`].
    pub fn to_ipc_bytes(&self) -> Result<Vec<u8>, CubeError> {
        ipc::write(self, false)
    }

    /// Read a cube written by [`Cube::to_ipc_bytes`].
    pub fn from_ipc_bytes(bytes: &[u8]) -> Result<Cube, CubeError> {
        ipc::read(bytes, None)
    }

    /// The cube as small bytes (axes, prompts, tokens) plus its metric values, one slice per
    /// metric: the worker hands the values over as separate buffers, so that neither side holds
    /// the cube twice.
    pub fn to_transfer(&self) -> Result<(Vec<u8>, Vec<&[f32]>), CubeError> {
        let bytes = ipc::write(self, true)?;
        Ok((bytes, self.metrics.iter().map(|m| m.values.values().as_ref()).collect()))
    }

    /// Read a cube from [`Cube::to_transfer`]'s parts (NaN values are missing cells).
    pub fn from_transfer(bytes: &[u8], values: Vec<Vec<f32>>) -> Result<Cube, CubeError> {
        ipc::read(bytes, Some(values))
    }
}

/// Order variants as researchers expect: `Full`, `Attn`, `Head_0`, `Head_1`, …, `Head_10`, then
/// the rest alphabetically.
pub fn variant_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn rank(v: &str) -> (u8, u64, &str) {
        match v {
            "Full" => (0, 0, v),
            "Attn" => (1, 0, v),
            _ => match v.strip_prefix("Head_").and_then(|n| n.parse::<u64>().ok()) {
                Some(n) => (2, n, v),
                None => (3, 0, v),
            },
        }
    }
    rank(a).cmp(&rank(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_numpys() {
        // Expectations worked by hand (and as `numpy.round(x, 4)` gives them).
        let r = Rounding::new(4);
        assert_eq!(r.apply(1.23456), 1.2346);
        // Rounded as read: narrowing to f32 first (12.147350311…) would give 12.1474.
        assert_eq!(r.to_f32(12.147_349_957_180_065), 12.1473f32);
        // Ties go to the even neighbour: 0.03125 × 10^4 = 312.5 exactly → 312.
        assert_eq!(r.apply(0.03125), 0.0312);
        assert_eq!(r.apply(-0.03125), -0.0312);
        // 0.03135 × 10^4 is 313.50000000000006 in float64: not a tie.
        assert_eq!(r.apply(0.03135), 0.0314);
        let whole = Rounding::new(0);
        assert_eq!([0.5, 1.5, 2.5, -2.5, 3.49].map(|x| whole.apply(x)), [0.0, 2.0, 2.0, -2.0, 3.0]);
        // Zero without a sign; NaN, infinities and unscalable values unchanged.
        assert!(r.apply(-0.00001).is_sign_positive() && r.apply(-0.00001) == 0.0);
        assert!(r.apply(f64::NAN).is_nan());
        assert_eq!(r.apply(f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert_eq!(r.apply(1e305), 1e305);
        // Between 2^51 and 2^52 (after scaling) the library rounding takes over.
        assert_eq!(whole.apply(2_251_799_813_685_248.5), 2_251_799_813_685_248.0);
        assert_eq!(whole.apply(2_251_799_813_685_249.5), 2_251_799_813_685_250.0);
    }

    proptest::proptest! {
        /// The `f32` of a rounded value rounds to itself (the writer rounds what `load` rounded
        /// already): where the `f32` spacing is under `10^-d` the `f32` is within half of it of
        /// the value, where it is over, the only `f32` within half a spacing of what it rounds to.
        #[test]
        fn rounding_an_f32_of_a_rounded_value_changes_nothing(
            x in proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
            scale in -8i32..12,
            decimals in 0u32..=9,
        ) {
            let x = x.clamp(-1e30, 1e30) * 10f64.powi(scale) % 1e9;
            let r = Rounding::new(decimals);
            let q = r.to_f32(x);
            proptest::prop_assert_eq!(r.to_f32(q as f64).to_bits(), q.to_bits(), "x {}", x);
        }
    }

    #[test]
    fn variants_sort_numerically() {
        let mut v = vec!["Head_10", "Attn", "Head_2", "zeta", "Full", "Head_0", "MLP"];
        v.sort_by(|a, b| variant_order(a, b));
        assert_eq!(
            v,
            ["Full", "Attn", "Head_0", "Head_2", "Head_10", "MLP", "zeta"]
        );
    }
}
