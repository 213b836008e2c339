//! Sans-IO decoders: bytes in, [`Cube`] out.
//!
//! An [`Ingest`] never reads a file itself. It says which byte ranges it needs next
//! ([`Ingest::poll`] → [`Poll::NeedsData`]), the caller fetches them however it can (`Blob.slice`
//! in the browser worker, `std::fs` in the CLI, HTTP range requests) and pushes them back with
//! [`Ingest::push`]. Parquet is read footer first, then only the column chunks the cube needs;
//! CSV and JSON are fed in chunks of [`TEXT_CHUNK_BYTES`] and never held whole.
//!
//! ```
//! use mask_impact::ingest::{read_bytes, Format};
//! let csv = b"layer,token_position,token_masked,l2_distance\n0,0,\"a,b\",1.5\n0,1,x,\n";
//! let cube = mask_impact::ingest::read_bytes("tiny.csv", csv).unwrap();
//! assert_eq!(cube.prompts[0].token(0), Some("a,b"));
//! assert_eq!(cube.value(0, cube.cell(0, 0, 0, 0), 0), Some(1.5));
//! assert_eq!(cube.value(0, cube.cell(0, 0, 0, 0), 1), None);
//! ```

mod compressed;
mod fast;
mod parquet;
mod orient;
mod text;

use std::ops::Range;

use bytes::Bytes;

use crate::cube::{ColumnMap, Cube, CubeBuilder, CubeError};

pub use self::compressed::{without_compression_suffix, Codec, Inflater};
pub use self::parquet::ParquetSource;
pub use self::fast::BufferPool;
pub use self::text::{BatchSink, TextDecoder, TextSource};

/// The first bytes of a JSON file that [`json_orient`] looks at: those the decoder samples
/// before it decides.
pub const JSON_ORIENT_BYTES: usize = text::SCHEMA_SAMPLE_BYTES;

/// The pandas `orient` (other than `records`) of the JSON text `text` (a file from its start),
/// when its first [`JSON_ORIENT_BYTES`] tell, as the decoder tells it: such a file is one
/// object, which is read as records but not split into parts.
pub fn json_orient(text: &[u8]) -> Option<&'static str> {
    text::file_orient(text).map(orient::Orient::name)
}

/// Size of the chunks CSV and JSON are read in.
pub const TEXT_CHUNK_BYTES: u64 = 8 << 20;
/// How many leading bytes are read to recognise the format.
pub const SNIFF_BYTES: u64 = 4 << 10;

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    Csv,
    /// A JSON array of row objects (pandas `orient="records"`) or JSON Lines.
    Json,
}

/// What can go wrong reading a file. Every message starts with the file name.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{file}: the file is empty")]
    EmptyFile { file: String },
    #[error("{file}: {what}, not a result table (Parquet, CSV or JSON)")]
    NotData { file: String, what: String },
    #[error("{file}: cannot read it as Parquet: {message}")]
    Parquet { file: String, message: String },
    #[error("{file}: cannot read it as CSV: {message}")]
    Csv { file: String, message: String },
    #[error("{file}: cannot read it as JSON: {message}")]
    Json { file: String, message: String },
    #[error(transparent)]
    Cube(#[from] CubeError),
    #[error("{file}: reading failed: {message}")]
    Read { file: String, message: String },
    #[error("{file}: loading was cancelled")]
    Cancelled { file: String },
}

/// The first bytes of a gzip stream (RFC 1952).
pub const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
/// The first bytes of a zstd frame (RFC 8878).
pub const ZSTD_MAGIC: &[u8] = b"\x28\xb5\x2f\xfd";

/// Extensions of the files in a folder that are read as result files (compressed too).
pub const RESULT_EXTENSIONS: [&str; 5] = ["parquet", "csv", "json", "jsonl", "ndjson"];

/// Whether a file of this name, found in a folder (a dataset, as pyarrow, polars, DuckDB,
/// Spark and `convert --partition-by` write one), is one of its result files: by its
/// extension (see [`RESULT_EXTENSIONS`]; `.gz` or `.zst` after it too), not hidden and not
/// named with a leading `_` (`_SUCCESS`, `_metadata`, `_common_metadata`).
pub fn is_result_file_name(name: &str) -> bool {
    let name = without_compression_suffix(name).to_ascii_lowercase();
    !name.starts_with(['.', '_']) && name.rsplit_once('.').is_some_and(|(_, ext)| RESULT_EXTENSIONS.contains(&ext))
}

/// What a folder without result files is (the CLI and the page say it of such a folder).
pub const NO_RESULT_FILES: &str =
    "a folder with no result files (.parquet, .csv, .json, .jsonl, .ndjson, compressed or not) in it or its sub-folders";

/// Whether a folder of this name is walked for result files (not hidden, not `_`-named as
/// Spark's `_temporary`).
pub fn is_dataset_folder_name(name: &str) -> bool {
    !name.starts_with(['.', '_'])
}

/// Whether a file at `path` (`/`-separated) inside a chosen folder is one of its dataset's
/// files: a result file, in no hidden or `_`-named sub-folder. `path` starts with the chosen
/// folder's own name, whatever that is (`run/generation_step=3/part-0.parquet`, as a browser
/// gives a picked folder's files).
pub fn is_dataset_file_path(path: &str) -> bool {
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let _chosen = parts.next();
    let mut rest: Vec<&str> = parts.collect();
    let Some(name) = rest.pop() else { return false };
    is_result_file_name(name) && rest.iter().all(|f| is_dataset_folder_name(f))
}

/// Recognise the format from the first bytes (the name is used only to word errors).
pub fn sniff(file: &str, head: &[u8]) -> Result<Format, IngestError> {
    sniff_as(file, file, head)
}

/// [`sniff`], the name `name` telling what the content does not (`file` named in errors).
fn sniff_as(file: &str, name: &str, head: &[u8]) -> Result<Format, IngestError> {
    let not = |what: &str| IngestError::NotData {
        file: file.to_string(),
        what: what.to_string(),
    };
    if head.is_empty() {
        return Err(IngestError::EmptyFile {
            file: file.to_string(),
        });
    }
    if head.starts_with(b"PAR1") {
        return Ok(Format::Parquet);
    }
    const MAGICS: [(&[u8], &str); 9] = [
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"PK\x03\x04", "a ZIP archive"),
        (GZIP_MAGIC, "a gzip-compressed file (decompress it first)"),
        (b"%PDF", "a PDF document"),
        (b"ARROW1", "an Arrow IPC file"),
        (ZSTD_MAGIC, "a zstd-compressed file (decompress it first)"),
        (b"RIFF", "a RIFF (image/audio) file"),
    ];
    for (magic, what) in MAGICS {
        if head.starts_with(magic) {
            return Err(not(&format!("this is {what}")));
        }
    }
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let first = text.iter().copied().find(|b| !b.is_ascii_whitespace());
    let looks_binary = text.iter().take(4096).any(|&b| b == 0);
    if looks_binary {
        if text.len() >= 4 && name.to_ascii_lowercase().ends_with(".parquet") {
            return Err(IngestError::Parquet {
                file: file.to_string(),
                message: "it does not start with the Parquet magic bytes `PAR1` (damaged, or not Parquet)".into(),
            });
        }
        return Err(not("this is a binary file of an unknown kind"));
    }
    let lower = name.to_ascii_lowercase();
    match first {
        None => Err(IngestError::EmptyFile {
            file: file.to_string(),
        }),
        Some(b'[') | Some(b'{') => Ok(Format::Json),
        Some(_) if lower.ends_with(".parquet") => Err(IngestError::Parquet {
            file: file.to_string(),
            message: "this is a text file, not Parquet (it does not start with the Parquet magic bytes `PAR1`)".into(),
        }),
        Some(_) if [".json", ".jsonl", ".ndjson"].iter().any(|e| lower.ends_with(e)) => Err(not(
            "this JSON holds a single value, not rows: expected an array of row objects (pandas `orient=\"records\"`) or JSON Lines",
        )),
        Some(_) => Ok(Format::Csv),
    }
}

/// Progress of a load.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Progress {
    /// Bytes handed to the decoder so far.
    pub bytes_read: u64,
    /// Size of the file.
    pub bytes_total: u64,
    /// Data rows decoded so far.
    pub rows: u64,
}

/// What an [`Ingest`] wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Fetch these byte ranges and [`push`](Ingest::push) them.
    NeedsData(Vec<Range<u64>>),
    /// Rows were added to the builder: poll again (a chance to report progress or to show
    /// [`CubeBuilder::snapshot`] before the file is read whole).
    Decoded,
    /// The file has been read whole; call [`Ingest::into_builder`] or [`Ingest::finish`].
    Finished,
}

enum State {
    Sniffing,
    Parquet(Box<ParquetSource>),
    Text(Box<TextSource>),
    Done,
}

/// A sans-IO reader of one file into a [`CubeBuilder`]. See the [module docs](self).
pub struct Ingest {
    file: String,
    file_len: u64,
    state: State,
    builder: CubeBuilder,
    format: Option<Format>,
    columns: Option<ColumnMap>,
    text_chunk_bytes: u64,
    text_fast_path: bool,
    /// `Some` when an early view is wanted: of this step (`Some(None)`: the smallest step).
    first_step: Option<Option<i64>>,
    /// The variants the early view may show ([`Ingest::with_early_view`]).
    early_variants: Option<Vec<String>>,
}

impl Ingest {
    /// Read the file `file` (a name, for messages) of `file_len` bytes into a new cube.
    pub fn new(file: &str, file_len: u64) -> Ingest {
        Ingest::with_builder(file, file_len, CubeBuilder::new())
    }

    /// Read one more file into an existing builder (several files make one cube).
    pub fn with_builder(file: &str, file_len: u64, builder: CubeBuilder) -> Ingest {
        Ingest {
            file: file.to_string(),
            file_len,
            state: State::Sniffing,
            builder,
            format: None,
            columns: None,
            text_chunk_bytes: TEXT_CHUNK_BYTES,
            text_fast_path: true,
            first_step: None,
            early_variants: None,
        }
    }

    /// Read CSV and JSON in chunks of `bytes` (at least 1) instead of [`TEXT_CHUNK_BYTES`]
    /// (tests use small chunks to put chunk boundaries everywhere).
    pub fn with_text_chunk_bytes(mut self, bytes: u64) -> Ingest {
        self.text_chunk_bytes = bytes.max(1);
        self
    }

    /// Whether CSV and JSON in the usual layouts go through the fast decoder (default `true`);
    /// `false` reads them with arrow-csv / arrow-json only (for comparisons).
    pub fn with_text_fast_path(mut self, fast: bool) -> Ingest {
        self.text_fast_path = fast;
        self
    }

    /// Read the Parquet rows of generation step `step` (`None`: the smallest step, which a view
    /// shows when none is asked for) before the others, so that a view of that step can be
    /// shown early: the row groups that can hold it (by their statistics) first, and within a
    /// large row group, its rows first.
    pub fn with_first_step(mut self, step: Option<i64>) -> Ingest {
        self.first_step = Some(step);
        self
    }

    /// With [`with_first_step`](Self::with_first_step), Parquet: when the step's rows are most
    /// of the row groups read first, only those of `variants` (what the view may show,
    /// [`ViewState::early_view_variants`]) go into a builder of their own at once
    /// ([`early_view`](Self::early_view)); the other rows wait until that step is read.
    ///
    /// [`ViewState::early_view_variants`]: crate::view::ViewState::early_view_variants
    pub fn with_early_view(mut self, variants: Vec<String>) -> Ingest {
        self.early_variants = Some(variants);
        self
    }

    /// The builder of the early view's rows ([`with_early_view`](Self::with_early_view)), once
    /// the step is read.
    pub fn early_view(&self) -> Option<&CubeBuilder> {
        match &self.state {
            State::Parquet(p) => p.early_view(),
            _ => None,
        }
    }

    /// The builder the rows go into (for [`CubeBuilder::snapshot`] while reading).
    pub fn builder(&self) -> &CubeBuilder {
        &self.builder
    }

    /// The format, once recognised.
    pub fn format(&self) -> Option<Format> {
        match &self.state {
            // A compressed file's, once its first decompressed bytes tell it.
            State::Text(t) if self.format.is_none() => t.format(),
            _ => self.format,
        }
    }

    /// The columns used, once the schema is known.
    pub fn columns(&self) -> Option<&ColumnMap> {
        self.columns.as_ref()
    }

    pub fn progress(&self) -> Progress {
        let bytes_read = match &self.state {
            State::Sniffing => 0,
            State::Parquet(p) => p.bytes_read(),
            State::Text(t) => t.bytes_read(),
            State::Done => self.file_len,
        };
        Progress {
            bytes_read,
            bytes_total: self.file_len,
            rows: self.builder.rows_read(),
        }
    }

    /// What is needed next.
    pub fn poll(&mut self) -> Result<Poll, IngestError> {
        match &mut self.state {
            State::Sniffing => {
                if self.file_len == 0 {
                    return Err(IngestError::EmptyFile {
                        file: self.file.clone(),
                    });
                }
                // One range: the first bytes, to tell the format.
                #[allow(clippy::single_range_in_vec_init)]
                Ok(Poll::NeedsData(vec![0..self.file_len.min(SNIFF_BYTES)]))
            }
            State::Parquet(p) => p.poll(&mut self.builder),
            State::Text(t) => {
                let poll = t.poll(&mut self.builder);
                // Kept for when the source is gone (a compressed file's format is its own).
                self.format = self.format.or_else(|| t.format());
                poll
            }
            State::Done => Ok(Poll::Finished),
        }
        .inspect(|p| {
            if *p == Poll::Finished {
                self.state = State::Done;
            }
        })
    }

    /// The byte ranges this ingest will most likely ask for after those of its current
    /// [`Poll::NeedsData`], at most `count` of them, for a caller that can read ahead while it
    /// decodes (the browser worker). Known for CSV and JSON (the next chunks); empty otherwise.
    pub fn read_ahead(&self, count: usize) -> Vec<Range<u64>> {
        match &self.state {
            State::Text(t) => t.read_ahead(count),
            _ => Vec::new(),
        }
    }

    /// An error if `range`, asked for by [`poll`](Self::poll), is not inside the file (damaged
    /// metadata can point past its end): say so instead of asking the reader for bytes that do
    /// not exist.
    pub fn check_range(&self, range: &Range<u64>) -> Result<(), IngestError> {
        if range.start > range.end || range.end > self.file_len {
            return Err(self.read_error(format!(
                "the file is damaged or truncated: it refers to bytes {}..{} of a {}-byte file",
                range.start, range.end, self.file_len
            )));
        }
        Ok(())
    }

    /// An error if a reader returned other than the bytes of `range`.
    pub fn check_data(&self, range: &Range<u64>, data: &[u8]) -> Result<(), IngestError> {
        if data.len() as u64 != range.end - range.start {
            return Err(self.read_error(format!(
                "asked for bytes {}..{}, got {} bytes (did the file change while it was read?)",
                range.start,
                range.end,
                data.len()
            )));
        }
        Ok(())
    }

    /// A read failure of this file (`message`: what the reader said).
    pub fn read_error(&self, message: String) -> IngestError {
        IngestError::Read {
            file: self.file.clone(),
            message,
        }
    }

    /// The error a caller returns when it stops the load.
    pub fn cancelled(&self) -> IngestError {
        IngestError::Cancelled {
            file: self.file.clone(),
        }
    }

    /// The state of reading `text`, with this ingest's settings.
    fn text_state(&self, mut text: TextSource) -> State {
        text.set_chunk_bytes(self.text_chunk_bytes);
        text.set_fast_path(self.text_fast_path);
        text.set_wide_metrics(self.builder.wants_wide_metrics());
        State::Text(Box::new(text))
    }

    /// Hand over the bytes of the ranges asked for by [`poll`](Self::poll).
    pub fn push(&mut self, ranges: Vec<Range<u64>>, data: Vec<Bytes>) -> Result<(), IngestError> {
        match &mut self.state {
            State::Sniffing => {
                let head = data.first().cloned().unwrap_or_default();
                if let Some(codec) = Codec::of(&head) {
                    // Compressed CSV or JSON: the text source tells which from the first
                    // decompressed bytes (and refuses compressed Parquet).
                    self.state = self.text_state(TextSource::compressed(&self.file, self.file_len, codec)?);
                    return Ok(());
                }
                let format = sniff(&self.file, &head)?;
                self.format = Some(format);
                self.state = match format {
                    Format::Parquet => {
                        let mut source = ParquetSource::new(&self.file, self.file_len)?;
                        if let Some(step) = self.first_step {
                            source = source.with_first_step(step);
                            if let Some(variants) = self.early_variants.take() {
                                source = source.with_early_view(variants);
                            }
                        }
                        State::Parquet(Box::new(source))
                    }
                    // The text source reads from byte 0 again: the head is small.
                    Format::Csv | Format::Json => self.text_state(TextSource::new(&self.file, self.file_len, format)),
                };
                Ok(())
            }
            State::Parquet(p) => {
                p.push(ranges, data, &mut self.builder)?;
                if self.columns.is_none() {
                    self.columns = p.columns().cloned();
                }
                Ok(())
            }
            State::Text(t) => {
                t.push(ranges, data, &mut self.builder)?;
                if self.columns.is_none() {
                    self.columns = t.columns().cloned();
                }
                Ok(())
            }
            State::Done => Ok(()),
        }
    }

    /// The builder, to read more files into it or to [`finish`](CubeBuilder::finish) it.
    pub fn into_builder(self) -> CubeBuilder {
        self.builder
    }

    /// Finish the cube of this one file.
    pub fn finish(self) -> Result<Cube, IngestError> {
        Ok(self.builder.finish()?)
    }
}

/// The spans to read for `ranges`: ranges nearer than `max_gap` bytes to each other joined,
/// no span longer than `max_span` (unless one range is), sorted. Every range lies within one
/// span. For readers whose every read has a fixed cost: a browser's `Blob.slice` cost about
/// half a millisecond (a round trip to the browser's blob registry), and a Parquet row group
/// asks for a range per column chunk.
pub fn coalesce_ranges(ranges: &[Range<u64>], max_gap: u64, max_span: u64) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.to_vec();
    sorted.sort_by_key(|r| (r.start, r.end));
    let mut spans: Vec<Range<u64>> = Vec::new();
    for r in sorted {
        match spans.last_mut() {
            Some(s) if r.start <= s.end.saturating_add(max_gap) && r.end.max(s.end) - s.start <= max_span => {
                s.end = s.end.max(r.end);
            }
            _ => spans.push(r),
        }
    }
    spans
}

/// Drive an [`Ingest`] to the end with a synchronous `fetch` of byte ranges. `progress` is
/// called after each push; returning `false` cancels.
pub fn drive(
    ingest: &mut Ingest,
    fetch: impl FnMut(Range<u64>) -> Result<Bytes, String>,
    mut progress: impl FnMut(&Progress) -> bool,
) -> Result<(), IngestError> {
    drive_with(ingest, fetch, |i| progress(&i.progress()))
}

/// [`drive`], with a callback that sees the whole [`Ingest`] (its progress and its builder)
/// after each push and each decoded batch; returning `false` cancels.
pub fn drive_with(
    ingest: &mut Ingest,
    mut fetch: impl FnMut(Range<u64>) -> Result<Bytes, String>,
    mut on_progress: impl FnMut(&Ingest) -> bool,
) -> Result<(), IngestError> {
    loop {
        match ingest.poll()? {
            Poll::Finished => return Ok(()),
            Poll::Decoded => {
                if !on_progress(ingest) {
                    return Err(ingest.cancelled());
                }
            }
            Poll::NeedsData(ranges) => {
                let data = ranges
                    .iter()
                    .map(|r| {
                        ingest.check_range(r)?;
                        let data = fetch(r.clone()).map_err(|message| ingest.read_error(message))?;
                        ingest.check_data(r, &data)?;
                        Ok(data)
                    })
                    .collect::<Result<Vec<_>, IngestError>>()?;
                ingest.push(ranges, data)?;
                if !on_progress(ingest) {
                    return Err(ingest.cancelled());
                }
            }
        }
    }
}

/// Read a whole in-memory file into a cube (tests, the CLI on small files).
pub fn read_bytes(file: &str, bytes: &[u8]) -> Result<Cube, IngestError> {
    let bytes = Bytes::copy_from_slice(bytes);
    let mut ingest = Ingest::new(file, bytes.len() as u64);
    drive(
        &mut ingest,
        |r| Ok(bytes.slice(r.start as usize..r.end as usize)),
        |_| true,
    )?;
    ingest.finish()
}

/// Read a file from disk into a cube, by byte ranges (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_path(path: &std::path::Path) -> Result<Cube, IngestError> {
    let mut ingest = open_path(path, CubeBuilder::new())?;
    drive_path(&mut ingest, path, |_| true)?;
    ingest.finish()
}

/// An [`Ingest`] for a file on disk (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_path(path: &std::path::Path, builder: CubeBuilder) -> Result<Ingest, IngestError> {
    let name = path.display().to_string();
    let len = std::fs::metadata(path)
        .map_err(|e| IngestError::Read {
            file: name.clone(),
            message: e.to_string(),
        })?
        .len();
    Ok(Ingest::with_builder(&name, len, builder))
}

/// Drive `ingest` from the file at `path` with positioned reads (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn drive_path(
    ingest: &mut Ingest,
    path: &std::path::Path,
    progress: impl FnMut(&Progress) -> bool,
) -> Result<(), IngestError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| IngestError::Read {
        file: path.display().to_string(),
        message: e.to_string(),
    })?;
    drive(
        ingest,
        |r| {
            f.seek(SeekFrom::Start(r.start)).map_err(|e| e.to_string())?;
            let mut buf = vec![0; (r.end - r.start) as usize];
            f.read_exact(&mut buf).map_err(|e| e.to_string())?;
            Ok(Bytes::from(buf))
        },
        progress,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_files_in_folders_go_by_their_names() {
        for name in ["part-0.parquet", "00000000.PARQUET", "part-00000-1b2c.c000.snappy.parquet", "a.csv.gz", "r.json", "r.jsonl.zst", "r.ndjson"] {
            assert!(is_result_file_name(name), "{name}");
        }
        for name in ["_SUCCESS", "_metadata", "_common_metadata", ".part-0.parquet.crc", "notes.txt", "parquet", "image.png", "x.gz"] {
            assert!(!is_result_file_name(name), "{name}");
        }
        assert!(is_dataset_folder_name("generation_step=3"));
        assert!(!is_dataset_folder_name("_temporary") && !is_dataset_folder_name(".git"));
    }

    #[test]
    fn a_picked_folders_files_go_by_their_path_below_it() {
        // The picked folder's own name does not count, whatever it is.
        for path in ["run/part-0.parquet", "_run/generation_step=3/variant=Full/part-0.csv", ".x/a.json.gz"] {
            assert!(is_dataset_file_path(path), "{path}");
        }
        for path in ["run/_temporary/part-0.parquet", "run/.hidden/a.csv", "run/_SUCCESS", "run/notes.txt", "run", "a.parquet", ""] {
            assert!(!is_dataset_file_path(path), "{path}");
        }
    }

    #[test]
    // Lists of one range are meant: the ranges a caller asks for.
    #[allow(clippy::single_range_in_vec_init)]
    fn ranges_near_each_other_are_read_as_one_span() {
        // Out of order, touching, 10 bytes apart, 100 apart; a gap of 10 joins the first three.
        let got = coalesce_ranges(&[30..40, 0..10, 10..20, 150..160], 10, 1000);
        assert_eq!(got, vec![0..40, 150..160]);
        // A range inside another, and one a span would make too long.
        assert_eq!(coalesce_ranges(&[0..100, 20..30, 100..250], 0, 200), vec![0..100, 100..250]);
        // One range longer than the longest span is read whole.
        assert_eq!(coalesce_ranges(&[0..500], 0, 200), vec![0..500]);
        assert_eq!(coalesce_ranges(&[], 10, 10), Vec::<Range<u64>>::new());
    }

    /// Regression: a Parquet footer that points past the end of a damaged file made the
    /// in-memory reader slice out of bounds (a panic) instead of reporting the damage.
    #[test]
    fn footer_pointing_past_the_end_is_an_error() {
        use crate::synth::{Synth, SynthConfig};
        let config = SynthConfig { steps: 1, layers: 4, heads: 0, ..SynthConfig::demo() };
        let synth = Synth::new(config);
        let mut file = Vec::new();
        let mut writer = ::parquet::arrow::ArrowWriter::try_new(&mut file, synth.schema(), None).unwrap();
        for batch in synth {
            writer.write(&batch).unwrap();
        }
        writer.close().unwrap();
        // Cut 4 KB out of the data pages; the footer, intact, now points past the end.
        let mid = file.len() / 3;
        file.drain(mid..mid + 4096);
        let err = read_bytes("cut.parquet", &file).unwrap_err().to_string();
        assert!(err.starts_with("cut.parquet: "), "{err}");
    }

    /// `read_ahead` names the chunks a CSV load asks for next: with 12-byte chunks of a
    /// 49-byte file, after the request for bytes 0..12 come 12..24, 24..36, 36..48 and 48..49.
    #[test]
    fn read_ahead_names_the_next_text_chunks() {
        let csv = b"layer,token_position,l2_distance\n0,0,1.5\n0,1,2.5\n";
        assert_eq!(csv.len(), 49);
        let mut ingest = Ingest::new("a.csv", 49).with_text_chunk_bytes(12);
        let mut asked = Vec::new();
        let mut predicted = Vec::new();
        loop {
            match ingest.poll().unwrap() {
                Poll::Finished => break,
                Poll::Decoded => {}
                Poll::NeedsData(ranges) => {
                    if !asked.is_empty() && predicted.is_empty() {
                        predicted = ingest.read_ahead(5);
                        assert_eq!(ingest.read_ahead(1), predicted[..1].to_vec());
                    }
                    let data = ranges.iter().map(|r| Bytes::copy_from_slice(&csv[r.start as usize..r.end as usize])).collect();
                    asked.extend(ranges.iter().cloned());
                    ingest.push(ranges, data).unwrap();
                }
            }
        }
        // The sniffing read (the whole small file), then the chunks.
        assert_eq!(asked, vec![0..49, 0..12, 12..24, 24..36, 36..48, 48..49]);
        assert_eq!(predicted, vec![12..24, 24..36, 36..48, 48..49]);
        assert_eq!(ingest.finish().unwrap().rows_read, 2);
    }

    /// `bytes` read as `file` in chunks of `chunk` bytes, with its progress at the end.
    fn read_in_chunks(file: &str, bytes: &[u8], chunk: u64) -> Result<(Cube, Progress, Option<Format>), IngestError> {
        let bytes = Bytes::copy_from_slice(bytes);
        let mut ingest = Ingest::new(file, bytes.len() as u64).with_text_chunk_bytes(chunk);
        drive(&mut ingest, |r| Ok(bytes.slice(r.start as usize..r.end as usize)), |_| true)?;
        let (progress, format) = (ingest.progress(), ingest.format());
        Ok((ingest.finish()?, progress, format))
    }

    /// gzip (two members, as pigz writes) and zstd CSV and JSON read as their plain text,
    /// in chunks that cut members and frames anywhere, a file shorter than the schema
    /// sample too; progress counts the file's (compressed) bytes. Compressed Parquet, a cut
    /// stream and compressed non-data are refused, naming the file.
    #[test]
    fn compressed_text_reads_as_its_plain_text() {
        use std::io::Write;
        let gzip = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let mut csv = String::from("generation_step,layer,token_masked,token_position,variant,l2_distance\n");
        for i in 0..30_000 {
            csv += &format!("{},{},\"t,{}\",{},{},{}.{:04}\n", i / 10_000, i % 4, i % 13, (i / 4) % 2500, ["Full", "Attn"][i % 2], i % 97, i % 9973);
        }
        let json = r#"[{"layer":0,"token_position":0,"token_masked":"a","l2_distance":1.5},{"layer":0,"token_position":1,"token_masked":"b","l2_distance":2.25}]"#;
        for (name, plain) in [("r.csv", csv.as_bytes()), ("r.json", json.as_bytes())] {
            let (want, _, want_format) = read_in_chunks(name, plain, 1 << 20).unwrap();
            let (half, rest) = plain.split_at(plain.len() / 2);
            for (suffix, compressed) in [
                (".gz", [gzip(half), gzip(rest)].concat()),
                (".zst", zstd::encode_all(plain, 3).unwrap()),
            ] {
                let file = format!("{name}{suffix}");
                for chunk in [997, 1 << 20] {
                    let (got, progress, format) = read_in_chunks(&file, &compressed, chunk).unwrap();
                    assert_eq!(format, want_format, "{file}");
                    assert_eq!(progress.bytes_read, compressed.len() as u64, "{file}");
                    assert_eq!((got.rows_read, got.steps.clone(), got.variants.clone()), (want.rows_read, want.steps.clone(), want.variants.clone()), "{file}");
                    assert!(got.metrics[0].values == want.metrics[0].values, "{file} in chunks of {chunk}");
                }
            }
        }
        // By hand: the JSON's second row, and a CSV row (i = 10_007: step 1, layer 3, token
        // "t,10", position 1, Attn, 16.0034).
        let (cube, ..) = read_in_chunks("r.json.zst", &zstd::encode_all(json.as_bytes(), 3).unwrap(), 7).unwrap();
        assert_eq!((cube.value(0, cube.cell(0, 0, 0, 0), 1), cube.prompts[0].token(1)), (Some(2.25), Some("b")));
        let (cube, ..) = read_in_chunks("r.csv.gz", &gzip(csv.as_bytes()), 4096).unwrap();
        let attn = cube.variants.iter().position(|v| v == "Attn").unwrap();
        assert_eq!(cube.value(0, cube.cell(0, 1, attn, 3), 1), Some(16.0034));

        let refused = |file: &str, bytes: &[u8], says: &str| {
            let err = read_in_chunks(file, bytes, 4096).map(|_| ()).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{file}: ")) && err.contains(says), "{file}: {err}");
        };
        refused("p.parquet.gz", &gzip(b"PAR1\x15\x04 rest of a parquet file PAR1"), "gzip-compressed Parquet file");
        let whole = gzip(csv.as_bytes());
        refused("cut.csv.gz", &whole[..whole.len() / 2], "cannot decompress it (gzip)");
        let whole = zstd::encode_all(csv.as_bytes(), 3).unwrap();
        refused("cut.csv.zst", &whole[..whole.len() - 3], "cannot decompress it (zstd)");
        refused("img.png.gz", &gzip(b"\x89PNG\r\n\x1a\n and the rest"), "a PNG image");
        refused("empty.csv.gz", &gzip(b""), "empty");
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff("a", b"PAR1xxxx").unwrap(), Format::Parquet);
        assert_eq!(sniff("a", b"  [{\"a\":1}]").unwrap(), Format::Json);
        assert_eq!(sniff("a", b"\xef\xbb\xbf{\"a\":1}\n").unwrap(), Format::Json);
        assert_eq!(sniff("a", b"layer,x\n").unwrap(), Format::Csv);
        assert_eq!(
            sniff("pic.parquet", b"\x89PNG\r\n\x1a\n").unwrap_err().to_string(),
            "pic.parquet: this is a PNG image, not a result table (Parquet, CSV or JSON)"
        );
        assert_eq!(sniff("e.csv", b"").unwrap_err().to_string(), "e.csv: the file is empty");
        assert_eq!(sniff("e.csv", b" \n ").unwrap_err().to_string(), "e.csv: the file is empty");
        assert!(sniff("x.parquet", b"\0\0\0\0garbage").unwrap_err().to_string().contains("PAR1"));
        // Text under a Parquet name, and a JSON scalar, are named for what they are.
        assert!(sniff("notes.parquet", b"# Notes\n").unwrap_err().to_string().contains("a text file, not Parquet"));
        assert!(sniff("n.json", b"42\n").unwrap_err().to_string().contains("a single value, not rows"));
        assert_eq!(sniff("n.csv", b"42\n").unwrap(), Format::Csv);
    }
}
