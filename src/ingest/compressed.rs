//! gzip- and zstd-compressed CSV and JSON (pandas writes `results.csv.gz` when the name says
//! so), decompressed as their bytes come in, by the viewer's worker ([`TextSource`]) and the
//! CLI alike.
//!
//! [`TextSource`]: super::TextSource

use std::io::Write;

use super::{Format, IngestError, GZIP_MAGIC, ZSTD_MAGIC};

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zstd,
}

impl Codec {
    /// The compression of a file that starts with `head`; `None` for an uncompressed file.
    pub fn of(head: &[u8]) -> Option<Codec> {
        if head.starts_with(GZIP_MAGIC) {
            Some(Codec::Gzip)
        } else if head.starts_with(ZSTD_MAGIC) {
            Some(Codec::Zstd)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// The error for a stream of `file` that cannot be decompressed (damaged, or cut short).
    pub fn error(self, file: &str, e: impl std::fmt::Display) -> IngestError {
        IngestError::Read {
            file: file.to_string(),
            message: format!("cannot decompress it ({}): {e}", self.name()),
        }
    }

    /// The format of this codec's file `file` from its first decompressed bytes `head`: CSV
    /// or JSON, told as [`sniff`](super::sniff) tells them by the name without its compression
    /// suffix (`results.json.gz`). A compressed Parquet file is an error: it is not read,
    /// Parquet compresses its own pages and its footer must be read first.
    pub fn sniff(self, file: &str, head: &[u8]) -> Result<Format, IngestError> {
        match super::sniff_as(file, without_compression_suffix(file), head)? {
            Format::Parquet => Err(IngestError::Read {
                file: file.to_string(),
                message: format!(
                    "this is a {}-compressed Parquet file: decompress it first (Parquet compresses its own pages)",
                    self.name()
                ),
            }),
            format => Ok(format),
        }
    }
}

/// `name` without a compressed file's suffix (`results.csv.gz` → `results.csv`), as it is.
pub fn without_compression_suffix(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    // ASCII suffixes: the cut falls between characters.
    let suffix = [".gz", ".zst"].iter().find(|x| lower.ends_with(*x)).map_or(0, |x| x.len());
    &name[..name.len() - suffix]
}

/// A decompressor of one file's stream, fed in pieces of any size: gzip with every member
/// read (as `gzip -d` reads concatenated files, and pigz writes them), zstd with every frame.
pub struct Inflater {
    codec: Codec,
    /// The file, for messages.
    file: String,
    kind: Kind,
    /// The text of the piece being handed on (scratch).
    text: Vec<u8>,
}

enum Kind {
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    Zstd {
        decoder: zstd::stream::raw::Decoder<'static>,
        /// Whether the last frame begun has ended (the stream may end here).
        frame_done: bool,
    },
}

/// The most compressed bytes to decompress at a time before the text they give is handed on:
/// an 8 MiB chunk of the seed-scale CSV, gzipped, is 115 MiB of text, and would be held whole
/// (64 KiB of result-file gzip give about 1 MiB; of any gzip, 64 MiB at most).
const INFLATE_PIECE_BYTES: usize = 64 << 10;

/// Room made in the output for each step of the zstd decoder.
const ZSTD_STEP_BYTES: usize = 256 << 10;

impl Inflater {
    /// A decompressor of the `codec`-compressed file `file` (a name, for messages).
    pub fn new(codec: Codec, file: &str) -> Result<Inflater, IngestError> {
        let kind = match codec {
            Codec::Gzip => Kind::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new()))),
            Codec::Zstd => Kind::Zstd {
                decoder: zstd::stream::raw::Decoder::new().map_err(|e| codec.error(file, e))?,
                frame_done: false,
            },
        };
        Ok(Inflater { codec, file: file.to_string(), kind, text: Vec::new() })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Decompresses `input`, the next bytes of the stream, [`INFLATE_PIECE_BYTES`] at a time:
    /// the text of each piece goes to `to` before the next piece is decompressed.
    pub fn decompress(&mut self, input: &[u8], mut to: impl FnMut(&[u8]) -> Result<(), IngestError>) -> Result<(), IngestError> {
        let mut text = std::mem::take(&mut self.text);
        for piece in input.chunks(INFLATE_PIECE_BYTES) {
            text.clear();
            self.push(piece, &mut text).map_err(|e| self.codec.error(&self.file, e))?;
            to(&text)?;
        }
        self.text = text;
        Ok(())
    }

    /// The stream has ended: its last text goes to `to`; an error if it was cut short.
    pub fn end(&mut self, mut to: impl FnMut(&[u8]) -> Result<(), IngestError>) -> Result<(), IngestError> {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        self.finish(&mut text).map_err(|e| self.codec.error(&self.file, e))?;
        to(&text)
    }

    /// Decompresses `input`, the next bytes of the stream; what they give is appended to
    /// `out`.
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        match &mut self.kind {
            Kind::Gzip(d) => {
                d.write_all(input)?;
                out.append(d.get_mut());
            }
            Kind::Zstd { decoder, frame_done } => {
                use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
                let mut from = InBuffer::around(input);
                loop {
                    out.reserve(ZSTD_STEP_BYTES);
                    let start = out.len();
                    let mut to = OutBuffer::around_pos(out, start);
                    let hint = decoder.run(&mut from, &mut to)?;
                    let full = to.pos() == to.capacity();
                    if to.pos() > start || from.pos() > 0 {
                        *frame_done = hint == 0;
                    }
                    // Done when the input is taken and the decoder holds nothing more back (it
                    // did not fill the room it had).
                    if from.pos() == input.len() && !full {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The stream has ended: its last bytes are appended to `out`; an error if it was cut
    /// short.
    fn finish(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match &mut self.kind {
            Kind::Gzip(d) => {
                d.try_finish()?;
                out.append(d.get_mut());
                Ok(())
            }
            Kind::Zstd { frame_done, .. } => {
                if *frame_done {
                    Ok(())
                } else {
                    Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "incomplete frame"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` decompressed by an inflater fed `compressed` in pieces of `piece` bytes.
    fn inflate(codec: Codec, compressed: &[u8], piece: usize) -> std::io::Result<Vec<u8>> {
        let mut inflater = Inflater::new(codec, "t").unwrap();
        let mut out = Vec::new();
        for p in compressed.chunks(piece) {
            inflater.push(p, &mut out)?;
        }
        inflater.finish(&mut out)?;
        Ok(out)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Every member and frame, whatever the pieces; a cut stream is an error, for each codec.
    /// (The compressed bytes come from the encoders of the same crates; the expected text is
    /// the input itself.)
    #[test]
    fn streams_decompress_whole_in_any_pieces_and_cut_ones_fail() {
        let text: Vec<u8> = (0..20_000).flat_map(|i| format!("0,{},tok{},{}.{}\n", i % 36, i % 7, i, i % 9973).into_bytes()).collect();
        let (a, b) = text.split_at(text.len() / 3);
        let two_members = [gzip(a), gzip(b)].concat();
        let two_frames = [zstd::encode_all(a, 3).unwrap(), zstd::encode_all(b, 19).unwrap()].concat();
        for (codec, compressed) in [(Codec::Gzip, &two_members), (Codec::Zstd, &two_frames)] {
            assert_eq!(Codec::of(compressed), Some(codec));
            for piece in [1, 7, 4096, compressed.len()] {
                assert!(inflate(codec, compressed, piece).unwrap() == text, "{codec:?} in pieces of {piece}");
            }
            for cut in [compressed.len() / 2, compressed.len() - 1] {
                assert!(inflate(codec, &compressed[..cut], 4096).is_err(), "{codec:?} cut at {cut}");
            }
        }
        assert_eq!(Codec::of(b"PAR1"), None);
    }
}
