//! Parquet by byte ranges: footer first (`ParquetMetaDataPushDecoder`), then only the column
//! chunks the cube needs (`ParquetPushDecoder` with a `ProjectionMask`).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::arrow::push_decoder::{ParquetPushDecoder, ParquetPushDecoderBuilder, RowGroupSelection};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataPushDecoder};
use parquet::DecodeResult;

use std::collections::VecDeque;

use arrow_array::RecordBatch;

use super::{IngestError, Poll};
use crate::cube::{ColumnMap, CubeBuilder};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 64 * 1024;

enum Stage {
    Footer(ParquetMetaDataPushDecoder),
    /// Reading only the step column of the row group read first, to find where the rows of
    /// the first step are.
    Probe(Box<Probe>),
    Data(ParquetPushDecoder),
    Done,
}

/// The early view of a large row group: its step column is read first (a few KB), then the
/// rows of the step the view shows are decoded before the rest of the group, so the view does
/// not wait for a whole row group (pandas/pyarrow write groups of 1Mi rows, a dozen steps).
struct Probe {
    decoder: ParquetPushDecoder,
    /// The step the view shows.
    step: i64,
    /// The row group probed.
    group: usize,
    /// The order the row groups are read in (`group` first).
    order: Vec<usize>,
    mask: ProjectionMask,
    /// The step column as runs: (is `step`, rows).
    runs: Vec<(bool, usize)>,
}

/// After a [`Probe`]: rows still to come before the step shown is read (and complete: no
/// other row group holds it).
struct Early {
    step: i64,
    rows_left: u64,
}

/// Most rows held back for an early view ([`Held`]): its decoded batches stay in memory until
/// it is made (about 45 bytes a row for result files).
const HELD_MAX_ROWS: u64 = 2 << 20;

/// The early view of a step that is most of its row groups (the real files: 2 steps, 34
/// variants): the rows before it are decoded as usual, but only those of the step and of the
/// variants the view may show ([`ViewState::early_view_variants`]) go into a cube builder of
/// their own at once; the batches are held back and go into the file's builder once the step is
/// read. Putting every row in a cube was a third of the time to the first view.
///
/// [`ViewState::early_view_variants`]: crate::view::ViewState::early_view_variants
struct Held {
    /// The file's name (for the builder).
    file: String,
    step: i64,
    variants: Vec<String>,
    /// The file's step and variant columns.
    step_column: Option<String>,
    variant_column: Option<String>,
    /// Rows still to come before the step is read (the row groups that can hold it).
    rows_left: u64,
    /// Whether a row of the step was seen, and a row of another step after one: the step is
    /// read (files written step by step), as the cube builder judges it
    /// ([`CubeBuilder::step_passed`]).
    seen: bool,
    passed: bool,
    builder: CubeBuilder,
    /// Whether `builder` has its source (begun with the first batch).
    begun: bool,
    batches: VecDeque<RecordBatch>,
}

/// The Parquet half of an [`Ingest`](super::Ingest).
pub struct ParquetSource {
    file: String,
    stage: Stage,
    bytes_read: u64,
    columns: Option<ColumnMap>,
    metadata: Option<Arc<ParquetMetaData>>,
    first_step: Option<i64>,
    /// Whether an early view is wanted ([`Self::with_first_step`]).
    early_view: bool,
    file_len: u64,
    early: Option<Early>,
    /// The variants an early view may show ([`Self::with_early_view`]).
    early_variants: Option<Vec<String>>,
    held: Option<Held>,
    /// Once the held rows are read: their builder (no rows of those variants: `None`), and the
    /// held batches, for the file's builder.
    early_builder: Option<CubeBuilder>,
    released: VecDeque<RecordBatch>,
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
            early_view: false,
            file_len,
            early: None,
            early_variants: None,
            held: None,
            early_builder: None,
            released: VecDeque::new(),
        })
    }

    /// Make the early view of the step [`with_first_step`](Self::with_first_step) asks for
    /// from the rows of these variants alone, the others held back until it is made (see
    /// [`Held`]).
    pub fn with_early_view(mut self, variants: Vec<String>) -> ParquetSource {
        self.early_variants = Some(variants);
        self
    }

    /// The builder of the early view's rows ([`Self::with_early_view`]), once they are read.
    pub fn early_view(&self) -> Option<&CubeBuilder> {
        self.early_builder.as_ref()
    }

    /// Read the rows of generation step `step` first (`None`: the smallest step): the row
    /// groups whose statistics say they can hold it, and within a large row group that no other
    /// group shares it with, its rows before the others (see [`Probe`]).
    pub fn with_first_step(mut self, step: Option<i64>) -> ParquetSource {
        self.first_step = step;
        self.early_view = true;
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
                        self.stage = self.start_data(Arc::new(metadata), builder)?;
                    }
                    DecodeResult::Finished => {
                        return Err(IngestError::Parquet {
                            file,
                            message: "the footer holds no metadata".into(),
                        })
                    }
                },
                Stage::Probe(probe) => match probe.decoder.try_decode().map_err(err)? {
                    DecodeResult::NeedsData(ranges) => return Ok(Poll::NeedsData(ranges)),
                    DecodeResult::Data(batch) => {
                        if !probe.add(&batch) {
                            // Steps that are not integers: read the file plainly.
                            let probe = self.take_probe();
                            self.stage = Stage::Data(self.data_decoder(&probe.order, probe.mask, None)?);
                        }
                    }
                    DecodeResult::Finished => {
                        let probe = self.take_probe();
                        let (first, rest) = probe.selections();
                        let early_rows: u64 = first.iter().filter(|r| !r.skip).map(|r| r.row_count as u64).sum();
                        // No rows of the step in the group (statistics that were wrong): no early part.
                        let first = (early_rows > 0).then_some(first);
                        self.early = first.as_ref().map(|_| Early { step: probe.step, rows_left: early_rows });
                        if let Some(columns) = self.columns.clone().filter(|_| early_rows > 0) {
                            self.hold(probe.step, early_rows, &columns);
                        }
                        let groups = first
                            .into_iter()
                            .chain(rest)
                            .map(|r| RowGroupSelection::new(probe.group, Some(RowSelection::from(r))))
                            .chain(probe.order.iter().skip(1).map(|&g| RowGroupSelection::new(g, None)))
                            .collect();
                        self.stage = Stage::Data(self.data_decoder(&probe.order, probe.mask, Some(groups))?);
                    }
                },
                Stage::Data(decoder) => {
                    // Batches held back for an early view go in first, one a poll.
                    if let Some(batch) = self.released.pop_front() {
                        self.push_batch(&batch, builder)?;
                        return Ok(Poll::Decoded);
                    }
                    match decoder.try_decode().map_err(err)? {
                        DecodeResult::NeedsData(ranges) => return Ok(Poll::NeedsData(ranges)),
                        DecodeResult::Data(batch) => {
                            match &mut self.held {
                                Some(held) => {
                                    if !held.add(batch) {
                                        // Rows the early view cannot take: the file's builder
                                        // says what is wrong with them.
                                        if let Some(held) = self.held.take() {
                                            self.released = held.batches;
                                        }
                                    } else if held.rows_left == 0 || held.passed {
                                        self.release();
                                    }
                                }
                                None => self.push_batch(&batch, builder)?,
                            }
                            return Ok(Poll::Decoded);
                        }
                        DecodeResult::Finished => {
                            if self.held.is_some() {
                                self.release();
                                continue;
                            }
                            self.stage = Stage::Done;
                            return Ok(Poll::Finished);
                        }
                    }
                }
                Stage::Done => return Ok(Poll::Finished),
            }
        }
    }

    /// A batch into the file's builder; after a probe, the step counts as read once its rows
    /// are in.
    fn push_batch(&mut self, batch: &RecordBatch, builder: &mut CubeBuilder) -> Result<(), IngestError> {
        builder.push_batch(batch)?;
        if let Some(early) = &mut self.early {
            early.rows_left = early.rows_left.saturating_sub(batch.num_rows() as u64);
            if early.rows_left == 0 {
                builder.mark_step_read(early.step);
                self.early = None;
            }
        }
        Ok(())
    }

    /// The held rows are read: the early view's builder is made (when it has rows, and the
    /// rows held are less than three quarters of the file: a later view of the whole file is
    /// soon enough), the held batches released.
    fn release(&mut self) {
        if let Some(held) = self.held.take() {
            let file_rows = self.metadata.as_ref().map_or(0, |m| m.file_metadata().num_rows().max(0) as u64);
            let held_rows: u64 = held.batches.iter().map(|b| b.num_rows() as u64).sum();
            let worth = held_rows.saturating_mul(4) < file_rows.saturating_mul(3);
            self.early_builder = (worth && held.builder.rows_read() > 0).then_some(held.builder);
            self.released = held.batches;
        }
    }

    /// Hold the rows before the step `step` is read (`rows`) back for an early view, if one is
    /// wanted and they are not too many ([`Held`]).
    fn hold(&mut self, step: i64, rows: u64, columns: &ColumnMap) {
        if let Some(variants) = self.early_variants.take() {
            if rows <= HELD_MAX_ROWS {
                self.held = Some(Held {
                    file: self.file.clone(),
                    step,
                    variants,
                    step_column: columns.step.clone(),
                    variant_column: columns.variant.clone(),
                    rows_left: rows,
                    seen: false,
                    passed: false,
                    builder: CubeBuilder::new(),
                    begun: false,
                    batches: VecDeque::new(),
                });
            }
        }
    }

    fn take_probe(&mut self) -> Box<Probe> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Probe(p) => p,
            // Only called in the probe stage.
            _ => unreachable!("take_probe outside the probe stage"),
        }
    }

    fn start_data(&mut self, metadata: Arc<ParquetMetaData>, builder: &mut CubeBuilder) -> Result<Stage, IngestError> {
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
        let n_groups = metadata.num_row_groups();
        let stats = columns.step.as_deref().and_then(|c| step_statistics(&metadata, &schema, c));
        let step = self.first_step.or_else(|| {
            if !self.early_view {
                return None;
            }
            // The view shows the smallest step when none is asked for.
            let (mins, _) = stats.as_ref()?;
            mins.iter().copied().collect::<Option<Vec<i64>>>()?.into_iter().min()
        });
        let order = match (&stats, step) {
            (Some((mins, maxes)), Some(step)) => row_groups_first(mins, maxes, step),
            _ => (0..n_groups).collect(),
        };
        let probe = match (&columns.step, step, order.first()) {
            (Some(step_column), Some(step), Some(&group)) => {
                let step_root = schema.fields().iter().position(|f| f.name() == step_column);
                let big = metadata.row_group(group).num_rows() > BATCH_ROWS as i64;
                let range = stats.as_ref().map(|(mins, maxes)| (mins[group], maxes[group]));
                // A group of one step (by its statistics) gains nothing.
                let one_step = matches!(range, Some((Some(lo), Some(hi))) if lo == hi);
                let only_here = stats.as_ref().is_some_and(|(mins, maxes)| {
                    (0..n_groups).filter(|&g| g != group).all(|g| match (mins[g], maxes[g]) {
                        (Some(lo), Some(hi)) => step < lo || hi < step,
                        _ => false,
                    })
                });
                match step_root {
                    // Only when no other group can hold the step: otherwise the rest of this
                    // group would follow the step's rows, and the step would look complete
                    // (to the builder) before the other groups' rows of it are read.
                    Some(root) if big && !one_step && only_here => {
                        let probe_mask = ProjectionMask::roots(decoder.parquet_schema(), [root]);
                        let probe_decoder = ParquetPushDecoderBuilder::try_new_decoder(metadata.clone())
                            .map_err(err)?
                            .with_row_group_selections(vec![RowGroupSelection::new(group, None)])
                            .with_projection(probe_mask)
                            .with_batch_size(BATCH_ROWS * 4)
                            .build()
                            .map_err(err)?;
                        Some(Probe { decoder: probe_decoder, step, group, order: order.clone(), mask: mask.clone(), runs: Vec::new() })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        // Without statistics every row group may hold the step: nothing is held back.
        if let (None, Some(step), Some(_), Some((mins, maxes))) = (&probe, step, &columns.step, &stats) {
            // The rows of the row groups that can hold the step, read first.
            let rows: u64 = order
                .iter()
                .take_while(|&&g| may_hold(mins, maxes, g, step))
                .map(|&g| metadata.row_group(g).num_rows().max(0) as u64)
                .sum();
            if rows > 0 {
                self.hold(step, rows, &columns);
            }
        }
        self.columns = Some(columns);
        match probe {
            Some(p) => Ok(Stage::Probe(Box::new(p))),
            None => Ok(Stage::Data(self.data_decoder(&order, mask, None)?)),
        }
    }

    /// The decoder of the rows: the row groups in `order`, or the row-group-local selections
    /// `groups` (after a probe).
    fn data_decoder(
        &self,
        order: &[usize],
        mask: ProjectionMask,
        groups: Option<Vec<RowGroupSelection>>,
    ) -> Result<ParquetPushDecoder, IngestError> {
        let err = |e| explain(&self.file, e);
        let Some(metadata) = &self.metadata else {
            return Err(IngestError::Parquet { file: self.file.clone(), message: "the footer was not read".into() });
        };
        let decoder = ParquetPushDecoderBuilder::try_new_decoder(metadata.clone()).map_err(err)?;
        let decoder = match groups {
            Some(groups) => decoder.with_row_group_selections(groups),
            None => decoder.with_row_groups(order.to_vec()),
        };
        decoder.with_projection(mask).with_batch_size(BATCH_ROWS).build().map_err(err)
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
            Stage::Probe(p) => p.decoder.push_ranges(ranges, data).map_err(err),
            Stage::Data(d) => d.push_ranges(ranges, data).map_err(err),
            Stage::Done => Ok(()),
        }
    }
}

/// Per row group, the smallest and largest value of the step column by its statistics
/// (arrow-rs `StatisticsConverter`; `None` where a group has none), or `None` when the column
/// has no usable statistics.
type StepStatistics = (Vec<Option<i64>>, Vec<Option<i64>>);

fn step_statistics(metadata: &ParquetMetaData, schema: &arrow_schema::Schema, step_column: &str) -> Option<StepStatistics> {
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
    (mins.len() == groups.len() && maxes.len() == groups.len()).then_some((mins, maxes))
}

/// Row group order that puts first the groups whose statistics allow `step` (the others keep
/// their order after them; a group without statistics may hold it).
fn row_groups_first(mins: &[Option<i64>], maxes: &[Option<i64>], step: i64) -> Vec<usize> {
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..mins.len()).partition(|&i| may_hold(mins, maxes, i, step));
    first.into_iter().chain(rest).collect()
}

/// Whether row group `group` may hold `step` by its statistics (a group without them may).
fn may_hold(mins: &[Option<i64>], maxes: &[Option<i64>], group: usize, step: i64) -> bool {
    match (mins.get(group).copied().flatten(), maxes.get(group).copied().flatten()) {
        (Some(lo), Some(hi)) => lo <= step && step <= hi,
        _ => true,
    }
}

impl Held {
    /// Holds `batch` back, its rows of the step and variants into the early view's builder;
    /// `false` (the batch still held) when they cannot go there.
    fn add(&mut self, batch: RecordBatch) -> bool {
        let ok = self.take_rows(&batch).is_some();
        self.batches.push_back(batch);
        ok
    }

    /// The rows of `batch` of the step and variants into the early view's builder.
    fn take_rows(&mut self, batch: &RecordBatch) -> Option<()> {
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        self.rows_left = self.rows_left.saturating_sub(batch.num_rows() as u64);
        if !self.begun {
            self.builder.begin_source(&self.file, &batch.schema()).ok()?;
            self.begun = true;
        }
        let column = |name: &Option<String>| name.as_deref().and_then(|c| batch.column_by_name(c));
        let mut keep = crate::cube::variant_is_one_of(column(&self.variant_column), batch.num_rows(), &self.variants).ok()?;
        if let Some(col) = column(&self.step_column) {
            let steps = crate::cube::numbers_as_i64(col).ok()?;
            let steps = steps.as_primitive::<arrow_array::types::Int64Type>();
            for (i, k) in keep.iter_mut().enumerate() {
                // As the cube builder does: no step is step 0.
                let of_step = (if steps.is_null(i) { 0 } else { steps.value(i) }) == self.step;
                self.passed |= self.seen && !of_step;
                self.seen |= of_step;
                *k &= of_step;
            }
        }
        if keep.iter().any(|&k| k) {
            let rows = arrow_select::filter::filter_record_batch(batch, &arrow_array::BooleanArray::from(keep)).ok()?;
            self.builder.push_batch(&rows).ok()?;
        }
        Some(())
    }
}

impl Probe {
    /// Adds a batch of the step column; `false` when it is not a column of integers.
    fn add(&mut self, batch: &arrow_array::RecordBatch) -> bool {
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        let Some(col) = batch.columns().first() else { return false };
        let Ok(steps) = crate::cube::numbers_as_i64(col) else { return false };
        let steps = steps.as_primitive::<arrow_array::types::Int64Type>();
        for i in 0..steps.len() {
            // As the cube builder does: no step is step 0.
            let s = if steps.is_null(i) { 0 } else { steps.value(i) };
            let hit = s == self.step;
            match self.runs.last_mut() {
                Some((h, n)) if *h == hit => *n += 1,
                _ => self.runs.push((hit, 1)),
            }
        }
        true
    }

    /// The selection of the rows of the step shown, and of the other rows (`None` when there
    /// are none), each without its trailing skip.
    fn selections(&self) -> (Vec<RowSelector>, Option<Vec<RowSelector>>) {
        let pick = |want: bool| -> Vec<RowSelector> {
            let mut out: Vec<RowSelector> = self
                .runs
                .iter()
                .map(|&(hit, n)| if hit == want { RowSelector::select(n) } else { RowSelector::skip(n) })
                .collect();
            while out.last().is_some_and(|r| r.skip) {
                out.pop();
            }
            out
        };
        let rest = pick(false);
        (pick(true), (!rest.is_empty()).then_some(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{drive_with, Ingest};
    use arrow_array::{Float32Array, Int64Array, RecordBatch};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    /// The value written for a cell: exact in `f32` for the sizes used here.
    fn value(step: i64, layer: i64, position: i64) -> f32 {
        (100_000 * step + 10_000 * layer + position) as f32
    }

    /// Steps in `steps` order, each 2 layers × `positions` positions, in row groups of
    /// `group_rows` rows.
    fn file(steps: &[i64], positions: i64, group_rows: usize) -> Bytes {
        let (mut s, mut l, mut p, mut v) = (vec![], vec![], vec![], vec![]);
        for &step in steps {
            for layer in 0..2i64 {
                for pos in 0..positions {
                    s.push(step);
                    l.push(layer);
                    p.push(pos);
                    v.push(value(step, layer, pos));
                }
            }
        }
        let batch = RecordBatch::try_from_iter([
            ("generation_step", Arc::new(Int64Array::from(s)) as _),
            ("layer", Arc::new(Int64Array::from(l)) as _),
            ("token_position", Arc::new(Int64Array::from(p)) as _),
            ("l2_distance", Arc::new(Float32Array::from(v)) as _),
        ])
        .unwrap();
        parquet_file(&batch, group_rows)
    }

    /// `batch` as a Parquet file of row groups of `group_rows` rows.
    pub(super) fn parquet_file(batch: &RecordBatch, group_rows: usize) -> Bytes {
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(group_rows)).build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
        Bytes::from(out)
    }

    /// Reads `bytes` asking for `first_step` first; returns the cube when step `step` first
    /// counts as read (`None` if it never does before the end), and the final cube.
    fn read(bytes: &Bytes, first_step: Option<i64>, step: i64) -> (Option<crate::cube::Cube>, crate::cube::Cube) {
        let mut ingest = Ingest::new("t.parquet", bytes.len() as u64).with_first_step(first_step);
        let mut early = None;
        drive_with(
            &mut ingest,
            |r| Ok(bytes.slice(r.start as usize..r.end as usize)),
            |i| {
                if early.is_none() && i.builder().step_passed(step) {
                    early = Some(i.builder().snapshot().unwrap());
                }
                true
            },
        )
        .unwrap();
        (early, ingest.finish().unwrap())
    }

    /// Every cell of `steps` at `positions` holds its value.
    fn check_values(cube: &crate::cube::Cube, steps: &[i64], positions: &[usize]) {
        for &step in steps {
            let si = cube.step_index(step).unwrap();
            for layer in 0..2usize {
                let at = cube.cell(0, si, 0, layer);
                for &pos in positions {
                    let want = value(step, layer as i64, pos as i64);
                    assert_eq!(cube.value(0, at, pos), Some(want), "step {step} layer {layer} position {pos}");
                }
            }
        }
    }

    #[test]
    fn row_groups_of_the_first_step_are_read_first() {
        // Three row groups, one per step (0, 1, 2), of 2 layers × 3 positions.
        let bytes = file(&[0, 1, 2], 3, 6);
        let (early, cube) = read(&bytes, Some(2), 2);
        // Step 2's group is read first; the snapshot is taken after the batch in which the
        // next group's step begins (here a whole group), before the file is read whole.
        assert_eq!(early.unwrap().steps, vec![0, 2]);
        assert_eq!(cube.steps, vec![0, 1, 2]);
        let (early, _) = read(&bytes, Some(1), 1);
        // Step 1's group first, then step 0's (where step 1 is passed); step 2's not yet.
        assert_eq!(early.unwrap().steps, vec![0, 1]);
        // Whatever the order, every value lands in its cell.
        check_values(&cube, &[0, 1, 2], &[0, 1, 2]);
    }

    /// Each step 2 × 40,000 = 80,000 rows: more than one batch (64Ki rows).
    const POSITIONS: i64 = 40_000;

    #[test]
    fn the_rows_of_the_step_shown_come_before_the_rest_of_their_row_group() {
        // One row group of three steps: step 1 (the middle) is read first and, the file having
        // no other group, is complete before any row of steps 0 or 2 is read.
        let bytes = file(&[0, 1, 2], POSITIONS, 1 << 20);
        let (early, cube) = read(&bytes, Some(1), 1);
        assert_eq!(early.unwrap().steps, vec![1]);
        check_values(&cube, &[0, 1, 2], &[0, 1, 39_999]);
        // No step asked for: the smallest one (by the statistics) is shown first.
        let (early, cube) = read(&bytes, None, 0);
        assert_eq!(early.unwrap().steps, vec![0]);
        check_values(&cube, &[0, 1, 2], &[0, 1, 39_999]);
    }

    #[test]
    fn a_step_that_other_row_groups_may_hold_is_complete_only_when_passed() {
        // Groups of 120,000 rows: step 1 (rows 80,000..160,000) spans both groups; when it
        // first counts as read, every one of its cells has its value.
        let bytes = file(&[0, 1, 2], POSITIONS, 120_000);
        let (early, cube) = read(&bytes, Some(1), 1);
        let all: Vec<usize> = (0..POSITIONS as usize).collect();
        check_values(&early.unwrap(), &[1], &all);
        check_values(&cube, &[0, 1, 2], &[0, 1, 39_999]);
    }
}

#[cfg(test)]
mod early_view {
    use super::super::{drive_with, Ingest};
    use arrow_array::{Float32Array, Int64Array, RecordBatch, StringArray};
    use bytes::Bytes;
    use std::sync::Arc;

    const VARIANTS: [&str; 3] = ["Full", "Attn", "Head_0"];
    const POSITIONS: i64 = 12_000;

    /// l2 of a cell (exact in `f32`); cosine is l2 + 0.5.
    fn value(step: i64, layer: i64, variant: usize, position: i64) -> f32 {
        (1_000_000 * step + 100_000 * layer + 20_000 * variant as i64 + position) as f32
    }

    /// Steps `0..steps` of 2 layers × `positions` positions × 3 variants, in row groups of
    /// `group_rows` rows.
    fn file(steps: i64, positions: i64, group_rows: usize) -> Bytes {
        let (mut s, mut l, mut p, mut v, mut l2, mut cos) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for step in 0..steps {
            for layer in 0..2i64 {
                for pos in 0..positions {
                    for (vi, name) in VARIANTS.iter().enumerate() {
                        s.push(step);
                        l.push(layer);
                        p.push(pos);
                        v.push(*name);
                        l2.push(value(step, layer, vi, pos));
                        cos.push(value(step, layer, vi, pos) + 0.5);
                    }
                }
            }
        }
        let batch = RecordBatch::try_from_iter([
            ("generation_step", Arc::new(Int64Array::from(s)) as _),
            ("layer", Arc::new(Int64Array::from(l)) as _),
            ("token_position", Arc::new(Int64Array::from(p)) as _),
            ("variant", Arc::new(StringArray::from(v)) as _),
            ("l2_distance", Arc::new(Float32Array::from(l2)) as _),
            ("cosine_distance", Arc::new(Float32Array::from(cos)) as _),
        ])
        .unwrap();
        super::tests::parquet_file(&batch, group_rows)
    }

    #[test]
    fn the_early_view_has_the_rows_of_its_variants_before_the_cube_has_any() {
        // Step 1 spans the first two of groups of 100,000 rows (both read first, held back until
        // a row of step 2 comes); in one group of all steps, its rows are read first (a probe)
        // and held back.
        // Steps of 72,000 rows.
        for group_rows in [100_000, 1 << 20] {
            let bytes = file(6, POSITIONS, group_rows);
            let mut ingest = Ingest::new("t.parquet", bytes.len() as u64)
                .with_first_step(Some(1))
                .with_early_view(vec!["Attn".into(), "Full".into()]);
            let mut early = None;
            drive_with(
                &mut ingest,
                |r| Ok(bytes.slice(r.start as usize..r.end as usize)),
                |i| {
                    if early.is_none() {
                        if let Some(b) = i.early_view() {
                            early = Some((b.snapshot().unwrap(), i.builder().rows_read()));
                        }
                    }
                    true
                },
            )
            .unwrap();
            let (early, rows_before) = early.expect("an early view");
            assert_eq!(rows_before, 0, "groups of {group_rows} rows: the file's cube had rows before the early view");
            assert_eq!((early.steps.clone(), early.variants.clone()), (vec![1], vec!["Full".to_string(), "Attn".to_string()]));
            assert_eq!(early.rows_read, 2 * 2 * POSITIONS as u64);
            for (vi, v) in [(0usize, 0usize), (1, 1)] {
                for layer in 0..2usize {
                    let at = early.cell(0, 0, vi, layer);
                    for pos in [0usize, 1, 5_000, 11_999] {
                        let want = value(1, layer as i64, v, pos as i64);
                        assert_eq!((early.value(0, at, pos), early.value(1, at, pos)), (Some(want), Some(want + 0.5)), "groups of {group_rows}: variant {v} layer {layer} position {pos}");
                    }
                }
            }
            // The whole file, every row once.
            let cube = ingest.finish().unwrap();
            assert_eq!((cube.rows_read, cube.duplicates), (6 * 2 * 3 * POSITIONS as u64, 0));
            assert_eq!(cube.variants, ["Full", "Attn", "Head_0"]);
            for step in 0..6usize {
                for vi in 0..3 {
                    let at = cube.cell(0, step, vi, 1);
                    for pos in [0usize, 11_999] {
                        let want = value(step as i64, 1, vi, pos as i64);
                        assert_eq!((cube.value(0, at, pos), cube.value(1, at, pos)), (Some(want), Some(want + 0.5)));
                    }
                }
            }
        }
    }

    #[test]
    fn a_file_read_mostly_before_its_view_shows_it_whole() {
        // 2 steps of 1,200 rows in one group: a row of step 1 comes in the batch that holds all of
        // step 0, the whole file.
        let bytes = file(2, 200, 1 << 20);
        let mut ingest = Ingest::new("t.parquet", bytes.len() as u64).with_first_step(Some(0)).with_early_view(vec!["Full".into()]);
        let mut early = false;
        drive_with(&mut ingest, |r| Ok(bytes.slice(r.start as usize..r.end as usize)), |i| {
            early |= i.early_view().is_some();
            true
        })
        .unwrap();
        assert!(!early);
        assert_eq!(ingest.finish().unwrap().rows_read, 2 * 2 * 200 * 3);
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
