//! One CSV or JSON file decoded by several threads: the file (mapped) is cut into segments of
//! whole records, each segment is decoded on its own by a [`TextDecoder`] (the one the viewer
//! uses), and the calling thread puts the batches into the cube in file order.
//!
//! Where a segment may start:
//! - **CSV**: after a line break outside quotes. Whether a byte is inside quotes follows from
//!   the number of quote characters before it (a doubled quote inside a quoted field counts
//!   twice). Counting them all would read the whole file once more on the calling thread, so
//!   the cut is placed by the nearest quote that can only open or only close a field, and
//!   checked afterwards: an odd number of quotes before any cut sends the file to one
//!   decoder. A segment whose records the fast decoder read, each whole, ended outside
//!   quotes (its quotes are even in number, and the first segment starts outside quotes, so
//!   each next one does too); the quotes of any other segment are counted. Each segment is
//!   decoded after a copy of the header row.
//! - **JSON records array** (`[{…},{…}]`, as pandas writes it): at the `{` of
//!   `},{"KEY":`, where `KEY` is the first key of the first record. Inside a JSON string a
//!   quote is escaped, so this exact text cannot be part of a string in a valid file. Each
//!   segment is decoded as an array of its own (`[` and `]` added).
//! - **JSON Lines**: after a line break (a JSON string holds no raw line break).
//!
//! Only a file that these rules cut into two or more segments is read this way. Anything
//! unexpected (a segment that fails to decode, segments that decode to different schemas)
//! makes the caller read the file again with one decoder, which then reports problems with
//! their exact line or byte.

use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender};

use arrow_schema::SchemaRef;

use super::{ChannelSink, TextMessage};
use crate::cube::{ColumnMap, CubeBuilder};
use crate::ingest::{self, Format, IngestError};

/// Target size of a segment: large enough that a segment's set-up (a decoder, its schema
/// from the first rows) is small beside its decoding, small enough to keep every thread busy
/// and the batches waiting for their turn few.
pub const SEGMENT_BYTES: usize = 32 << 20;

/// The segment size used: [`SEGMENT_BYTES`], or the environment variable
/// `MASK_IMPACT_SEGMENT_BYTES` (for tests, which split small files).
pub fn segment_bytes() -> usize {
    std::env::var("MASK_IMPACT_SEGMENT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(SEGMENT_BYTES)
}

/// How records are recognised in a file (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// CSV: the header row is `map[..header_end]`.
    Csv {
        header_end: usize,
    },
    /// JSON records array: the text that starts every record after the first (`},{"KEY":`).
    JsonArray {
        record_start: Vec<u8>,
    },
    JsonLines,
}

/// The layout of `map`, or `None` when it is not one this module splits.
fn layout(map: &[u8], format: Format) -> Option<Layout> {
    match format {
        Format::Csv => {
            let mut in_quotes = false;
            let header_end = csv_record_end(map, 0, &mut in_quotes)?;
            Some(Layout::Csv { header_end })
        }
        Format::Json => {
            let start = map.iter().position(|b| !b.is_ascii_whitespace())?;
            match map[start] {
                b'[' => {
                    // `[{"KEY":` with no spaces: pandas' records.
                    let rest = map.get(start + 1..)?;
                    let rest = rest.strip_prefix(b"{\"")?;
                    let key_len = memchr::memchr2(b'"', b'\\', rest)?;
                    if rest[key_len] != b'"' || rest.get(key_len + 1) != Some(&b':') {
                        return None;
                    }
                    let mut record_start = b"},{\"".to_vec();
                    record_start.extend_from_slice(&rest[..key_len]);
                    record_start.extend_from_slice(b"\":");
                    Some(Layout::JsonArray { record_start })
                }
                // pandas' other orients: one object, not lines.
                b'{' if ingest::json_orient(map).is_some() => None,
                b'{' => Some(Layout::JsonLines),
                _ => None,
            }
        }
        _ => None,
    }
}

/// CSV: the offset just after the first line break at or after `from` that is outside
/// quotes; `in_quotes` says whether `from` is inside quotes, and is kept up to date.
fn csv_record_end(map: &[u8], from: usize, in_quotes: &mut bool) -> Option<usize> {
    let mut at = from;
    while let Some(i) = memchr::memchr2(b'"', b'\n', &map[at..]) {
        let i = at + i;
        if map[i] == b'"' {
            *in_quotes = !*in_quotes;
        } else if !*in_quotes {
            return Some(i + 1);
        }
        at = i + 1;
    }
    None
}

/// How far past a cut's target [`csv_in_quotes_at`] looks for a quote that tells.
const QUOTE_WINDOW: usize = 64 << 10;

/// Whether `map[at]` is inside quotes, judged from the first quote at or after `at` (within
/// [`QUOTE_WINDOW`]) that can only open or only close a quoted field: a quote followed by
/// text (not a separator, line break or quote) opens one, a quote after text closes one. The
/// quotes before it, each toggling, give the state at `at`. With no such quote, `false`.
///
/// A guess, not a proof (a field may be quoted for longer than the window, a file may break
/// the quoting rules): [`load`] checks each cut (see the module docs).
fn csv_in_quotes_at(map: &[u8], at: usize) -> bool {
    // Bytes that may stand beside a quote that opens (before it) or closes (after it) a
    // field: the delimiters in use, line breaks, and a doubled quote.
    let separator = |b: Option<&u8>| matches!(b, None | Some(b',' | b';' | b'\t' | b'|' | b'\n' | b'\r' | b'"'));
    let end = at.saturating_add(QUOTE_WINDOW).min(map.len());
    let mut toggles = false;
    for i in memchr::memchr_iter(b'"', &map[at..end]).map(|i| at + i) {
        let before = i.checked_sub(1).and_then(|j| map.get(j));
        let after = map.get(i + 1);
        if !separator(after) && before != Some(&b'"') {
            // Opens: outside quotes just before it.
            return toggles;
        }
        if !separator(before) && after != Some(&b'"') {
            // Closes: inside quotes just before it.
            return !toggles;
        }
        toggles = !toggles;
    }
    false
}

/// Cuts a mapped file into segments, front to back.
struct Cutter<'a> {
    map: &'a [u8],
    layout: Layout,
    /// Where the next segment starts.
    next: usize,
    /// Target size of a segment.
    segment_bytes: usize,
}

/// One segment: its bytes in the file, and what to decode before and after them.
struct Segment {
    range: std::ops::Range<usize>,
    prefix: &'static [u8],
    suffix: &'static [u8],
}

impl Cutter<'_> {
    /// The next segment, `None` at the end of the file.
    fn next_segment(&mut self) -> Option<Segment> {
        let start = self.next;
        if start >= self.map.len() {
            return None;
        }
        let target = start.saturating_add(self.segment_bytes).min(self.map.len());
        let first = start == 0;
        // (end of this segment's bytes, start of the next segment)
        let cut = if target >= self.map.len() {
            None
        } else {
            match &self.layout {
                Layout::Csv { .. } => {
                    // Whether the target is inside quotes, judged from the quotes near it;
                    // the segments' own counts confirm it (see `load`).
                    let mut in_quotes = csv_in_quotes_at(self.map, target);
                    csv_record_end(self.map, target, &mut in_quotes).map(|e| (e, e))
                }
                Layout::JsonArray { record_start } => {
                    memchr::memmem::find(&self.map[target..], record_start)
                        // The segment ends with the record's `}`; the next starts at `{`.
                        .map(|i| (target + i + 1, target + i + 2))
                }
                Layout::JsonLines => memchr::memchr(b'\n', &self.map[target..])
                    .map(|i| (target + i + 1, target + i + 1)),
            }
        };
        let (end, next) = cut.unwrap_or((self.map.len(), self.map.len()));
        self.next = next;
        let last = next >= self.map.len();
        let (prefix, suffix): (&[u8], &[u8]) = match self.layout {
            Layout::JsonArray { .. } => (
                if first { b"" } else { b"[" },
                if last { b"" } else { b"]" },
            ),
            _ => (b"", b""),
        };
        Some(Segment {
            range: start..end,
            prefix,
            suffix,
        })
    }
}

/// Decode one segment with the decoder `new_decoder` makes for its length, sending schema,
/// batches, progress and (last) its end to `tx`.
fn decode_segment(
    name: &str,
    map: &memmap2::Mmap,
    header: &[u8],
    segment: &Segment,
    format: Format,
    new_decoder: impl Fn(u64) -> ingest::TextDecoder,
    tx: Sender<TextMessage>,
) {
    let bytes = &map[segment.range.clone()];
    super::map_pages(map, segment.range.clone());
    let len = header.len() + segment.prefix.len() + bytes.len() + segment.suffix.len();
    let mut decoder = new_decoder(len as u64);
    let mut sink = ChannelSink {
        file: name.to_string(),
        tx: super::Tx::Unbounded(tx),
    };
    let result = (|| -> Result<(), IngestError> {
        decoder.push(header, &mut sink)?;
        decoder.push(segment.prefix, &mut sink)?;
        for chunk in bytes.chunks(ingest::TEXT_CHUNK_BYTES as usize) {
            decoder.push(chunk, &mut sink)?;
            sink.send(TextMessage::Progress(chunk.len() as u64))?;
        }
        decoder.push(segment.suffix, &mut sink)?;
        decoder.finish(&mut sink)?;
        // CSV: whether the segment's quotes are odd in number. Where the fast decoder read
        // every record, each whole and each quoted field closed, they are even without a
        // count (and the segment ended outside quotes); where the general decoder took over,
        // they are counted (SIMD, at memory speed).
        let odd_quotes = format == Format::Csv
            && !decoder.decoded_all_fast()
            && bytecount::count(bytes, b'"') % 2 == 1;
        sink.send(TextMessage::SegmentEnd { odd_quotes })
    })();
    if let Err(e) = result {
        let _ = sink.send(TextMessage::Failed(e));
    }
    super::forget_pages(map, segment.range.clone());
}

/// Why [`load`] did not read the file: the caller reads it with one decoder instead.
#[derive(Debug)]
pub enum NotSplit {
    /// The file is not cut into two or more segments (its layout, or its size).
    Unsplittable,
    /// A segment failed, or the segments disagree; the builder holds part of the file.
    Failed,
}

/// Read the mapped file `map` into `builder` with `threads` decoding threads (see the module
/// docs). `progress` gets the bytes decoded and the rows read so far.
pub fn load(
    name: &str,
    map: &memmap2::Mmap,
    format: Format,
    threads: usize,
    builder: &mut CubeBuilder,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ColumnMap, NotSplit> {
    let layout = layout(map, format).ok_or(NotSplit::Unsplittable)?;
    let header: &[u8] = match layout {
        Layout::Csv { header_end } => &map[..header_end],
        _ => b"",
    };
    let mut cutter = Cutter {
        map,
        layout,
        next: header.len(),
        segment_bytes: segment_bytes(),
    };
    let Some(first) = cutter.next_segment() else {
        return Err(NotSplit::Unsplittable);
    };
    if cutter.next >= map.len() || threads < 2 {
        return Err(NotSplit::Unsplittable);
    }
    // The batches' buffers go back to the decoders once they are in the cube.
    let pool = ingest::BufferPool::new();
    let wide_metrics = builder.wants_wide_metrics();
    let (queue, jobs) = channel::<(Segment, Sender<TextMessage>)>();
    let jobs = std::sync::Mutex::new(jobs);
    std::thread::scope(|scope| {
        // The segments wait in one queue, taken in file order by whichever worker is free;
        // each has its own channel back, read in file order. At most `threads + 1` segments
        // are out at a time.
        for _ in 0..threads {
            let (header, pool, jobs) = (header, &pool, &jobs);
            scope.spawn(move || {
                let new_decoder = |len| {
                    ingest::TextDecoder::new(name, len, format)
                        .with_buffer_pool(pool.clone())
                        .with_wide_metrics(wide_metrics)
                };
                // The lock is held only to take a segment; a worker stops when the queue's
                // sender is dropped, as the reading below returns.
                while let Some((segment, out)) = jobs.lock().ok().and_then(|j| j.recv().ok()) {
                    decode_segment(name, map, header, &segment, format, new_decoder, out);
                }
            });
        }
        // Moved here, so that it is dropped when this closure returns, ending the workers.
        let queue = queue;
        let mut out: VecDeque<Receiver<TextMessage>> = VecDeque::new();
        let dispatch = |segment: Segment, out: &mut VecDeque<Receiver<TextMessage>>| {
            let (tx, rx) = channel();
            let _ = queue.send((segment, tx));
            out.push_back(rx);
        };
        dispatch(first, &mut out);
        let mut schema: Option<SchemaRef> = None;
        let mut columns = None;
        let mut bytes_done = header.len() as u64;
        // CSV: whether the quotes of the segments so far are odd in number. Each cut was
        // guessed to be outside quotes ([`csv_in_quotes_at`]); an odd number before a segment
        // proves the guess wrong, and the caller reads the file again with one decoder.
        let mut odd_quotes = false;
        while let Some(rx) = {
            while out.len() <= threads {
                match cutter.next_segment() {
                    Some(s) => dispatch(s, &mut out),
                    None => break,
                }
            }
            out.pop_front()
        } {
            if odd_quotes {
                return Err(NotSplit::Failed);
            }
            let mut segment_schema = None;
            // The segment's last message: without it, the segment was not decoded to its end.
            let mut segment_done = false;
            for message in rx {
                match message {
                    TextMessage::Schema(s) => {
                        match &schema {
                            None => {
                                columns = Some(
                                    builder
                                        .begin_source(name, &s)
                                        .map_err(|_| NotSplit::Failed)?,
                                );
                                schema = Some(s.clone());
                            }
                            Some(first) if first.fields() == s.fields() => {}
                            Some(_) => return Err(NotSplit::Failed),
                        }
                        segment_schema = Some(s);
                    }
                    TextMessage::Batch(batch) => {
                        if segment_schema.is_none() {
                            return Err(NotSplit::Failed);
                        }
                        builder.push_batch(&batch).map_err(|_| NotSplit::Failed)?;
                        pool.recycle(batch);
                    }
                    TextMessage::Progress(bytes) => {
                        bytes_done += bytes;
                        progress(bytes_done, builder.rows_read());
                    }
                    TextMessage::SegmentEnd { odd_quotes: odd } => {
                        odd_quotes ^= odd;
                        segment_done = true;
                    }
                    TextMessage::Failed(_) => return Err(NotSplit::Failed),
                }
            }
            if !segment_done {
                return Err(NotSplit::Failed);
            }
        }
        columns.ok_or(NotSplit::Failed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(map: &[u8], format: Format, segment_bytes: usize) -> Vec<Vec<u8>> {
        let layout = layout(map, format).unwrap();
        let header = match layout {
            Layout::Csv { header_end } => header_end,
            _ => 0,
        };
        let mut cutter = Cutter {
            map,
            layout,
            next: header,
            segment_bytes,
        };
        let mut out = Vec::new();
        while let Some(s) = cutter.next_segment() {
            let mut v = s.prefix.to_vec();
            v.extend_from_slice(&map[s.range]);
            v.extend_from_slice(s.suffix);
            out.push(v);
        }
        out
    }

    #[test]
    fn csv_cuts_outside_quotes() {
        // Quoted line breaks and doubled quotes; cut every few bytes.
        let csv = b"a,b\n1,\"x\ny\"\n2,\"say \"\"hi\"\"\nok\"\n3,z\n";
        let got = segments(csv, Format::Csv, 3);
        let want: Vec<&[u8]> = vec![b"1,\"x\ny\"\n", b"2,\"say \"\"hi\"\"\nok\"\n", b"3,z\n"];
        assert_eq!(got, want);
    }

    #[test]
    fn csv_quote_state_is_judged_by_the_nearest_telling_quote() {
        // (text, offset, inside quotes there): by hand, from the quoting rules.
        let cases: [(&[u8], usize, bool); 9] = [
            // An opening quote ahead: outside.
            (b"1,x\n2,\"a\nb\"\n", 4, false),
            // A closing quote ahead (after text): inside.
            (b"1,\"a\nb\"\n2,x\n", 5, true),
            // A quote between line breaks may open or close; the opening quote after it
            // tells: one toggle before that, so inside.
            (b"x\n\"\n3,\"t\"\n", 1, true),
            // A doubled quote inside a field tells nothing; the closing quote after it does.
            (b"1,\"say \"\"hi\"\" now\"\n", 5, true),
            // Between the two quotes of a doubled pair the count before is even: outside, as
            // counting from the start says.
            (b"1,\"say \"\"hi\"\" now\"\n", 8, false),
            // An empty quoted field `""`, then an opening quote: outside.
            (b"1,\"\",\"t\"\n", 2, false),
            // Semicolons and tabs are separators too.
            (b"1;\"a\"\n", 0, false),
            (b"a\"\t1\n", 0, true),
            // No quote at all: outside.
            (b"1,2\n3,4\n", 3, false),
        ];
        for (text, at, want) in cases {
            assert_eq!(
                csv_in_quotes_at(text, at),
                want,
                "{:?} at {at}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn json_arrays_cut_at_records_and_lines_at_line_breaks() {
        let json = br#"[{"k":1,"t":"},{\"k\":"},{"k":2,"t":"a"},{"k":3,"t":"b"}]"#;
        let got = segments(json, Format::Json, 5);
        let want: Vec<&[u8]> = vec![
            br#"[{"k":1,"t":"},{\"k\":"}]"#,
            br#"[{"k":2,"t":"a"}]"#,
            br#"[{"k":3,"t":"b"}]"#,
        ];
        assert_eq!(got, want);
        let lines = b"{\"k\":1}\n{\"k\":2}\n{\"k\":3}\n";
        let got = segments(lines, Format::Json, 2);
        let want: Vec<&[u8]> = vec![b"{\"k\":1}\n", b"{\"k\":2}\n", b"{\"k\":3}\n"];
        assert_eq!(got, want);
        // Spaces after the separators: not a layout cut here.
        assert!(layout(b"[ {\"k\": 1}]", Format::Json).is_none());
        // pandas' other orients are one object, whatever its line breaks.
        assert!(layout(b"{\n  \"columns\": [\"layer\"],\n  \"data\": [[0],\n[1]]}", Format::Json).is_none());
        assert!(layout(b"{\"0\":{\"layer\":0},\n\"1\":{\"layer\":1}}", Format::Json).is_none());
    }
}
