//! The shared logic of the `mask-impact` command-line tool (native only).
//!
//! - [`load`]: read one or more result files (Parquet, CSV, JSON; CSV and JSON also gzip- or
//!   zstd-compressed, as pandas writes `results.csv.gz`) into a [`Cube`] through
//!   [`crate::ingest`], with a progress callback. Memory follows the cube (the cells), not the
//!   input bytes.
//! - [`convert`]: write a cube as Parquet tuned for this data (rounded `float32` metrics,
//!   dictionary text, narrow integers, zstd, row groups of whole generation steps), optionally
//!   partitioned by step, and as CSV.
//! - [`inspect`]: what a file holds and what is wrong with it.
//! - [`text`]: CSV and JSON written the way pandas writes them (`generate`, `convert --csv`).
//! - [`AtomicOutput`]: outputs are written under a temporary name in the target folder and
//!   renamed when complete, so a failed run never leaves a partial file under the final name.

mod chunk;
pub mod convert;
mod delta;
pub mod dictionary;
pub mod inspect;
pub mod parallel;
pub mod text;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::cube::{ColumnMap, Cube, CubeBuilder};
use crate::ingest::{self, Codec, Format, IngestError};

/// What can go wrong in the command-line tool. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading an input failed (format, content).
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A file could not be created, written or renamed.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// Writing Parquet failed.
    #[error("{path}: cannot write Parquet: {message}")]
    ParquetWrite { path: String, message: String },
    /// Reading Parquet metadata failed.
    #[error("{path}: cannot read the Parquet metadata: {message}")]
    ParquetRead { path: String, message: String },
    /// The options do not make sense together.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> CliError {
        CliError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// Progress of a [`load`] over all its files.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadProgress {
    /// Index of the file being read.
    pub file_index: usize,
    /// Bytes read over all files so far.
    pub bytes_read: u64,
    /// Size of all files together.
    pub bytes_total: u64,
    /// Data rows read over all files so far.
    pub rows: u64,
}

/// What [`load`] read.
#[derive(Debug)]
pub struct Loaded {
    pub cube: Cube,
    /// The files read, in order (a folder input's files: see [`input_files`]).
    pub files: Vec<PathBuf>,
    /// The columns found in each input, in order.
    pub columns: Vec<ColumnMap>,
    /// The format of each input, in order.
    pub formats: Vec<Format>,
    /// Size of each input in bytes.
    pub input_bytes: Vec<u64>,
    /// Rows skipped because their layer or position was null.
    pub rows_skipped: u64,
    /// Most threads that decoded one input (several for a large CSV/JSON file, see
    /// [`parallel`]; 1 otherwise).
    pub decode_threads: usize,
}

impl Loaded {
    /// What became of rows that did not each fill a cell of their own: repeated cells (the
    /// later value kept) and rows without a layer or position (skipped); one sentence each.
    pub fn rows_not_kept(&self) -> Vec<String> {
        let mut said = Vec::new();
        if self.cube.duplicates > 0 {
            said.push(format!(
                "{} rows repeat a (step, prompt, variant, layer, position) already seen; the later value is kept",
                self.cube.duplicates
            ));
        }
        if self.rows_skipped > 0 {
            said.push(format!(
                "{} rows have no layer or no token position and were skipped",
                self.rows_skipped
            ));
        }
        said
    }

    /// Rows that each filled a cell of their own (the rows read, less repeats and skipped).
    pub fn distinct_rows(&self) -> u64 {
        self.cube
            .rows_read
            .saturating_sub(self.rows_skipped + self.cube.duplicates)
    }

    /// Whether any input has a column of this role.
    fn any(&self, f: impl Fn(&ColumnMap) -> bool) -> bool {
        self.columns.iter().any(f)
    }
}

/// The files that `paths` name: a file is itself; a folder is a dataset, as pyarrow, polars,
/// DuckDB, Spark and `convert --partition-by` write one (`generation_step=3/part-0.parquet`,
/// whose step the cube takes from the folder): the result files in it and its sub-folders
/// ([`ingest::is_result_file_name`]), in path order. Each comes with its size.
pub fn input_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, u64)>, CliError> {
    fn walk(folder: &Path, files: &mut Vec<(PathBuf, u64)>) -> Result<(), CliError> {
        let mut entries = std::fs::read_dir(folder)
            .and_then(|d| d.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>())
            .map_err(|e| CliError::io(folder, e))?;
        entries.sort();
        for path in entries {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            // A link to a folder is not followed (it may lead back up: `ln -s .. loop`).
            let linked = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() && !linked && ingest::is_dataset_folder_name(&name) => walk(&path, files)?,
                Ok(m) if m.is_file() && ingest::is_result_file_name(&name) => files.push((path, m.len())),
                Ok(_) => {}
                Err(e) => return Err(CliError::io(&path, e)),
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => files.push((p.clone(), m.len())),
            Ok(m) if m.is_dir() => {
                let before = files.len();
                walk(p, &mut files)?;
                if files.len() == before {
                    return Err(CliError::io(p, ingest::NO_RESULT_FILES));
                }
            }
            // A pipe (`<(gzip -dc …)`) would be read from its middle after the first look.
            Ok(_) => {
                return Err(CliError::io(
                    p,
                    "not a regular file or folder (a pipe or device): give the path of a result file",
                ))
            }
            Err(e) => return Err(CliError::io(p, e)),
        }
    }
    Ok(files)
}

/// Read `paths` (files, or folders of them: see [`input_files`]) into one cube, its metric
/// values rounded to `rounding` as they are read (see [`Rounding`](crate::cube::Rounding)).
/// `progress` is called after each chunk read.
pub fn load(
    paths: &[PathBuf],
    rounding: Option<crate::cube::Rounding>,
    mut progress: impl FnMut(&LoadProgress),
) -> Result<Loaded, CliError> {
    let (paths, input_bytes): (Vec<PathBuf>, Vec<u64>) = input_files(paths)?.into_iter().unzip();
    let bytes_total = input_bytes.iter().sum();
    let mut builder = CubeBuilder::new().with_rounding(rounding);
    let mut columns = Vec::new();
    let mut formats = Vec::new();
    let mut bytes_before = 0u64;
    let mut decode_threads = 1;
    for (file_index, path) in paths.iter().enumerate() {
        if let Some((format, codec)) = text_format(path, input_bytes[file_index])? {
            // The first file may be split over several decoding threads (a failed attempt
            // then starts the cube again).
            let split = file_index == 0 && codec.is_none();
            let (c, threads) = load_text(
                path,
                input_bytes[file_index],
                (format, codec),
                split,
                &mut builder,
                |bytes_read, rows| {
                    progress(&LoadProgress {
                        file_index,
                        bytes_read: bytes_before + bytes_read,
                        bytes_total,
                        rows,
                    })
                },
            )?;
            bytes_before += input_bytes[file_index];
            columns.push(c);
            decode_threads = decode_threads.max(threads);
            formats.push(format);
            continue;
        }
        let mut ingest = ingest::open_path(path, builder)?;
        ingest::drive_path(&mut ingest, path, |p| {
            progress(&LoadProgress {
                file_index,
                bytes_read: bytes_before + p.bytes_read,
                bytes_total,
                rows: p.rows,
            });
            true
        })?;
        bytes_before += input_bytes[file_index];
        if let Some(c) = ingest.columns() {
            columns.push(c.clone());
        }
        if let Some(f) = ingest.format() {
            formats.push(f);
        }
        builder = ingest.into_builder();
    }
    let rows_skipped = builder.rows_skipped();
    let cube = builder.finish().map_err(IngestError::from)?;
    Ok(Loaded {
        cube,
        files: paths,
        columns,
        formats,
        input_bytes,
        rows_skipped,
        decode_threads,
    })
}

/// The format of `path` when it is CSV or JSON (read by [`load_text`]), and how it is
/// compressed; `None` for Parquet and for what the ingest reports as an error itself (empty
/// files, unknown content). A compressed file must hold CSV or JSON.
fn text_format(path: &Path, len: u64) -> Result<Option<(Format, Option<Codec>)>, CliError> {
    use std::io::Read;
    if len == 0 {
        return Ok(None);
    }
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(ingest::SNIFF_BYTES).read_to_end(&mut head))
        .map_err(|e| CliError::io(path, e))?;
    if let Some(codec) = Codec::of(&head) {
        return Ok(Some((compressed_text_format(codec, path)?, Some(codec))));
    }
    Ok(match ingest::sniff(&path.display().to_string(), &head) {
        Ok(f @ (Format::Csv | Format::Json)) => Some((f, None)),
        _ => None,
    })
}

/// The format of the `codec`-compressed file `path`, from its first decompressed bytes: CSV
/// or JSON, else an error (a compressed Parquet file is not read: its own codecs compress it).
fn compressed_text_format(codec: Codec, path: &Path) -> Result<Format, CliError> {
    use std::io::Read;
    let name = path.display().to_string();
    let mut file = File::open(path).map_err(|e| CliError::io(path, e))?;
    let mut inflater = ingest::Inflater::new(codec, &name)?;
    let (mut head, mut buf) = (Vec::new(), vec![0u8; 64 << 10]);
    // Enough compressed bytes for the first decompressed ones (a zstd block comes whole).
    while (head.len() as u64) < ingest::SNIFF_BYTES {
        let n = file.read(&mut buf).map_err(|e| CliError::io(path, e))?;
        let keep = |text: &[u8]| {
            head.extend_from_slice(text);
            Ok(())
        };
        if n == 0 {
            inflater.end(keep)?;
            break;
        }
        inflater.decompress(&buf[..n], keep)?;
    }
    Ok(codec.sniff(&name, &head)?)
}

/// What the decoding thread of [`load_text`] sends.
enum TextMessage {
    Schema(arrow_schema::SchemaRef),
    Batch(arrow_array::RecordBatch),
    /// Bytes of the file decoded so far.
    Progress(u64),
    /// A segment decoded to its end, after its last batch: whether its quote characters are
    /// odd in number (CSV; see [`parallel::load`]).
    SegmentEnd { odd_quotes: bool },
    Failed(IngestError),
}

/// The sending end of a channel to the cube-building thread.
enum Tx {
    Bounded(std::sync::mpsc::SyncSender<TextMessage>),
    Unbounded(std::sync::mpsc::Sender<TextMessage>),
}

/// A [`BatchSink`](ingest::BatchSink) that sends to the cube-building thread.
struct ChannelSink {
    file: String,
    tx: Tx,
}

impl ChannelSink {
    fn send(&self, m: TextMessage) -> Result<(), IngestError> {
        let sent = match &self.tx {
            Tx::Bounded(tx) => tx.send(m).is_ok(),
            Tx::Unbounded(tx) => tx.send(m).is_ok(),
        };
        // The receiver stops listening only when it failed (and reports that): stop too.
        sent.then_some(()).ok_or_else(|| IngestError::Cancelled {
            file: self.file.clone(),
        })
    }
}

/// Map the pages of `range` of a file map in one call, before they are decoded, rather than
/// with a page fault every few pages as they are read (Linux 5.14 and later; elsewhere, or
/// when the kernel refuses, they are mapped as they are read). Reading the seed-scale CSV
/// (`inspect`): 3% less CPU time; the convert gains less than its noise.
fn map_pages(map: &memmap2::Mmap, range: std::ops::Range<usize>) {
    #[cfg(target_os = "linux")]
    let _ = map.advise_range(memmap2::Advice::PopulateRead, range.start, range.len());
    #[cfg(not(target_os = "linux"))]
    let _ = (map, range);
}

/// Drop the pages of `range` of a read-only file map from this process's memory once they
/// are decoded (the page cache keeps them; a later read maps them again).
fn forget_pages(map: &memmap2::Mmap, range: std::ops::Range<usize>) {
    // SAFETY: the map is a read-only map of a file: pages dropped read back from the file,
    // so memory still borrowed from it keeps its contents.
    #[cfg(unix)]
    let _ = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
    };
    #[cfg(not(unix))]
    let _ = (map, range);
}

impl ingest::BatchSink for ChannelSink {
    fn begin(&mut self, schema: &arrow_schema::SchemaRef) -> Result<(), IngestError> {
        self.send(TextMessage::Schema(schema.clone()))
    }
    fn batch(&mut self, batch: arrow_array::RecordBatch) -> Result<(), IngestError> {
        self.send(TextMessage::Batch(batch))
    }
}

/// Read a CSV or JSON file into `builder`.
///
/// With `split` (the builder is new: it can be started again), a file that [`parallel`] can
/// cut into segments is decoded by one thread per core, this thread building the cube.
/// Otherwise, or when that fails, two threads: one reads and decodes the text into record
/// batches (the same [`TextDecoder`](ingest::TextDecoder) the viewer uses), this one builds
/// the cube from them, and errors name their line or byte. A bounded channel between them
/// keeps memory to a few batches. A compressed file (`codec`) is decompressed as a stream by
/// the decoding thread; its lines and bytes are counted in the decompressed text. `progress`
/// gets the bytes of the file read and the rows read. Returns the columns found and the
/// number of decoding threads.
fn load_text(
    path: &Path,
    len: u64,
    (format, codec): (Format, Option<Codec>),
    split: bool,
    builder: &mut CubeBuilder,
    mut progress: impl FnMut(u64, u64),
) -> Result<(ColumnMap, usize), CliError> {
    use std::io::Read;
    let name = path.display().to_string();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if split && threads > 1 && len >= 2 * parallel::segment_bytes() as u64 {
        // SAFETY: as below (read only, dropped before returning).
        let map = File::open(path)
            .ok()
            .and_then(|f| unsafe { memmap2::Mmap::map(&f) }.ok());
        if let Some(map) = map {
            match parallel::load(&name, &map, format, threads, builder, &mut progress) {
                Ok(columns) => {
                    progress(len, builder.rows_read());
                    return Ok((columns, threads));
                }
                Err(parallel::NotSplit::Unsplittable) => {}
                Err(parallel::NotSplit::Failed) => {
                    *builder = CubeBuilder::new().with_rounding(builder.rounding())
                }
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<TextMessage>(4);
    let wide_metrics = builder.wants_wide_metrics();
    // The batches' buffers go back to the decoder once they are in the cube.
    let pool = ingest::BufferPool::new();
    std::thread::scope(|scope| {
        let decode_name = name.clone();
        let decode_pool = pool.clone();
        scope.spawn(move || {
            let mut sink = ChannelSink {
                file: decode_name.clone(),
                tx: Tx::Bounded(tx),
            };
            // A compressed file's decompressed length is not known (`finish` tells the end).
            let text_len = if codec.is_some() { u64::MAX } else { len };
            let mut decoder = ingest::TextDecoder::new(&decode_name, text_len, format)
                .with_buffer_pool(decode_pool)
                .with_wide_metrics(wide_metrics);
            let read_err = |e: std::io::Error| IngestError::Read {
                file: decode_name.clone(),
                message: e.to_string(),
            };
            let result = (|| -> Result<(), IngestError> {
                let f = File::open(path).map_err(read_err)?;
                // Mapped, the file is decoded where the page cache holds it (no copy through
                // read(): 0.6 s of this thread for a 1.2 GB JSON). Like ripgrep, this assumes
                // the file is not truncated while it is read. Where it cannot be mapped, read.
                // SAFETY: the map is only read, and dropped before this function returns.
                if let Some(map) = codec.is_none().then(|| unsafe { memmap2::Mmap::map(&f) }.ok()).flatten() {
                    #[cfg(unix)]
                    let _ = map.advise(memmap2::Advice::Sequential);
                    // A pandas `columns` file is read in place, holding nothing; it is looked
                    // through twice (for its columns, then for its rows).
                    let progress_tx = match &sink.tx {
                        Tx::Bounded(tx) => Some(tx.clone()),
                        Tx::Unbounded(_) => None,
                    };
                    let mut looked = 0u64;
                    let mut read = |range: std::ops::Range<usize>| {
                        looked += range.len() as u64;
                        if let Some(tx) = &progress_tx {
                            let _ = tx.send(TextMessage::Progress(looked / 2));
                        }
                        forget_pages(&map, range);
                    };
                    if decoder.decode_whole(&map, &mut sink, &mut read)? {
                        return Ok(());
                    }
                    let chunk_bytes = ingest::TEXT_CHUNK_BYTES as usize;
                    for (i, chunk) in map.chunks(chunk_bytes).enumerate() {
                        let range = i * chunk_bytes..i * chunk_bytes + chunk.len();
                        map_pages(&map, range.clone());
                        decoder.push(chunk, &mut sink)?;
                        sink.send(TextMessage::Progress(decoder.bytes_read()))?;
                        forget_pages(&map, range);
                    }
                    return decoder.finish(&mut sink);
                }
                // Read as a stream: decompressed, or a file that cannot be mapped. Progress
                // counts the bytes read from the file.
                let mut f = f;
                let mut inflater = codec.map(|c| ingest::Inflater::new(c, &decode_name)).transpose()?;
                let mut buf = vec![0u8; ingest::TEXT_CHUNK_BYTES as usize];
                let mut done = 0u64;
                loop {
                    let n = f.read(&mut buf).map_err(read_err)?;
                    done += n as u64;
                    let mut to_decoder = |text: &[u8]| decoder.push(text, &mut sink);
                    match &mut inflater {
                        Some(i) if n == 0 => i.end(&mut to_decoder)?,
                        Some(i) => i.decompress(&buf[..n], &mut to_decoder)?,
                        None => to_decoder(&buf[..n])?,
                    }
                    if n == 0 {
                        break;
                    }
                    sink.send(TextMessage::Progress(done))?;
                }
                decoder.finish(&mut sink)
            })();
            if let Err(e) = result {
                // Fails only when the receiver is gone, which then has its own error.
                let _ = sink.send(TextMessage::Failed(e));
            }
        });
        let mut columns = None;
        for message in rx {
            match message {
                TextMessage::Schema(schema) => {
                    columns = Some(
                        builder
                            .begin_source(&name, &schema)
                            .map_err(IngestError::from)?,
                    )
                }
                TextMessage::Batch(batch) => {
                    builder.push_batch(&batch).map_err(IngestError::from)?;
                    pool.recycle(batch);
                }
                TextMessage::Progress(bytes) => progress(bytes, builder.rows_read()),
                TextMessage::SegmentEnd { .. } => {}
                TextMessage::Failed(e) => return Err(CliError::from(e)),
            }
        }
        progress(len, builder.rows_read());
        columns.map(|c| (c, 1)).ok_or_else(|| {
            CliError::from(IngestError::Read {
                file: name.clone(),
                message: "the file holds no rows".into(),
            })
        })
    })
}

/// A file (or folder) written under a temporary name beside its final path, renamed into place
/// by [`commit`](Self::commit). Dropped without commit, the temporary is removed.
#[derive(Debug)]
pub struct AtomicOutput {
    final_path: PathBuf,
    temp_path: PathBuf,
    is_dir: bool,
    committed: bool,
}

impl AtomicOutput {
    fn temp_name(final_path: &Path) -> PathBuf {
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        final_path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
    }

    /// Prepare to write the file `final_path`; returns the output and a buffered writer on
    /// the temporary file.
    pub fn file(final_path: &Path) -> Result<(AtomicOutput, BufWriter<File>), CliError> {
        let temp_path = Self::temp_name(final_path);
        let f = File::create(&temp_path).map_err(|e| CliError::io(&temp_path, e))?;
        Ok((
            AtomicOutput {
                final_path: final_path.to_path_buf(),
                temp_path,
                is_dir: false,
                committed: false,
            },
            BufWriter::with_capacity(1 << 20, f),
        ))
    }

    /// Prepare to write the folder `final_path`; files go into [`path`](Self::path).
    pub fn dir(final_path: &Path) -> Result<AtomicOutput, CliError> {
        let temp_path = Self::temp_name(final_path);
        std::fs::create_dir_all(&temp_path).map_err(|e| CliError::io(&temp_path, e))?;
        Ok(AtomicOutput {
            final_path: final_path.to_path_buf(),
            temp_path,
            is_dir: true,
            committed: false,
        })
    }

    /// Where to write now.
    pub fn path(&self) -> &Path {
        &self.temp_path
    }

    /// Move the complete output to its final name (replacing what was there).
    pub fn commit(mut self) -> Result<PathBuf, CliError> {
        if self.is_dir && self.final_path.exists() {
            // A folder cannot be renamed over a non-empty one: move the old one aside first.
            let old = self.final_path.with_file_name(format!(
                ".{}.old-{}",
                self.final_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            std::fs::rename(&self.final_path, &old)
                .map_err(|e| CliError::io(&self.final_path, e))?;
            std::fs::rename(&self.temp_path, &self.final_path)
                .map_err(|e| CliError::io(&self.final_path, e))?;
            let removed = if old.is_dir() {
                std::fs::remove_dir_all(&old)
            } else {
                std::fs::remove_file(&old)
            };
            removed.map_err(|e| CliError::io(&old, e))?;
        } else {
            // A file that is there is removed first: renamed over, ext4 writes the new file
            // out to disk at once (its `auto_da_alloc` guard for programs that replace files
            // without fsync), 10 ms for the seed-scale output, where the kernel would
            // otherwise write it back in its own time. The final name never holds a partial
            // file either way.
            if self.final_path.is_file() {
                std::fs::remove_file(&self.final_path)
                    .map_err(|e| CliError::io(&self.final_path, e))?;
            }
            std::fs::rename(&self.temp_path, &self.final_path)
                .map_err(|e| CliError::io(&self.final_path, e))?;
        }
        self.committed = true;
        Ok(self.final_path.clone())
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the temporary is ours alone.
            let _ = if self.is_dir {
                std::fs::remove_dir_all(&self.temp_path)
            } else {
                std::fs::remove_file(&self.temp_path)
            };
        }
    }
}

/// Size of a file, or of all files under a folder.
pub fn size_on_disk(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| size_on_disk(&e.path())).sum())
        .unwrap_or(0)
}

/// Run `work(i, waiting)` for each index `i` of `order` on up to `threads` threads, each taking
/// the next index of `order` when it is free (so put the longest first); `waiting` says
/// whether indices were still waiting for a thread when `i` was taken. `meanwhile` runs on the
/// calling thread as they work. Returns the results by index (`order` holds each of
/// `0..order.len()` once); `None` where the work panicked.
pub(crate) fn in_turn<T: Send>(
    order: &[usize],
    threads: usize,
    work: impl Fn(usize, bool) -> T + Sync,
    meanwhile: impl FnOnce(),
) -> Vec<Option<T>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<T>>> =
        order.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        let (next, results, work) = (&next, &results, &work);
        let workers: Vec<_> = (0..threads.clamp(1, order.len().max(1)))
            .map(|_| {
                scope.spawn(move || loop {
                    let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let waiting = next.load(Ordering::Relaxed) < order.len();
                    let result = work(i, waiting);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(result);
                    }
                })
            })
            .collect();
        meanwhile();
        // A thread that panicked leaves its index without a result; the others go on.
        for w in workers {
            let _ = w.join();
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::in_turn;

    #[test]
    fn in_turn_gives_each_result_its_index_and_survives_a_panic() {
        // One thread: indices taken in `order`, each but the last with others waiting.
        let got = in_turn(&[2, 0, 1], 1, |i, waiting| (i * 10, waiting), || {});
        assert_eq!(got, vec![Some((0, true)), Some((10, false)), Some((20, true))]);
        // Two threads, index 1 panicking: the others are still done.
        let got = in_turn(
            &[0, 1, 2, 3],
            2,
            |i, _| {
                assert_ne!(i, 1, "the work of index 1 fails");
                i + 100
            },
            || {},
        );
        assert_eq!(got, vec![Some(100), None, Some(102), Some(103)]);
    }
}
