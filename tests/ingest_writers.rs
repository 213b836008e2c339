//! Every writer variant of the generated fixtures loads, and its sampled cells equal the values
//! pyarrow/pandas read from the same file (see `tests/fixtures/make_fixtures.py`).

mod ingest_common;

use std::ops::Range;
use std::path::Path;

use bytes::Bytes;
use ingest_common::{check_cube, entries, fixtures, manifest};
use mask_impact::cube::CubeBuilder;
use mask_impact::ingest::{self, drive, Ingest};

/// Reads a file by byte ranges, recording the ranges asked for.
fn read_recording(path: &Path, text_chunk_bytes: Option<u64>) -> (Result<mask_impact::cube::Cube, ingest::IngestError>, Vec<Range<u64>>) {
    let bytes = Bytes::from(std::fs::read(path).expect("fixture readable"));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
    let mut ingest = Ingest::with_builder(&name, bytes.len() as u64, CubeBuilder::new());
    if let Some(n) = text_chunk_bytes {
        ingest = ingest.with_text_chunk_bytes(n);
    }
    let mut asked = Vec::new();
    let result = drive(
        &mut ingest,
        |r| {
            asked.push(r.clone());
            Ok(bytes.slice(r.start as usize..r.end as usize))
        },
        |_| true,
    )
    .and_then(|()| ingest.finish());
    (result, asked)
}

#[test]
fn every_writer_variant_loads_with_pyarrow_values() {
    let dir = fixtures();
    let mut failures = Vec::new();
    let mut checked = 0;
    for e in entries("load") {
        let file = e["file"].as_str().expect("file");
        match ingest::read_path(&dir.join(file)) {
            Ok(cube) => {
                for d in check_cube(&cube, e) {
                    failures.push(format!("{file} ({}): {d}", e["variant"]));
                }
                checked += 1;
            }
            Err(err) => failures.push(format!("{file} ({}): does not load: {err}", e["variant"])),
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 50, "only {checked} files checked");
}

#[test]
fn text_files_load_the_same_with_any_chunk_size() {
    let dir = fixtures();
    let mut failures = Vec::new();
    for e in entries("load") {
        let file = e["file"].as_str().expect("file");
        if e["format"] == "parquet" || file.starts_with("big_") {
            continue;
        }
        for chunk in [1, 2, 3, 7, 64, 1000, 4099] {
            let (result, asked) = read_recording(&dir.join(file), Some(chunk));
            if asked.iter().any(|r| r.end - r.start > chunk.max(64 << 10)) {
                failures.push(format!("{file}: chunk {chunk}: asked for a larger range"));
            }
            match result {
                Ok(cube) => failures.extend(check_cube(&cube, e).into_iter().map(|d| format!("{file} chunk {chunk}: {d}"))),
                Err(err) => failures.push(format!("{file} chunk {chunk}: {err}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn big_text_files_straddle_chunks() {
    let dir = fixtures();
    let chunk = manifest()["text_chunk_bytes"].as_u64().expect("text_chunk_bytes");
    assert_eq!(chunk, ingest::TEXT_CHUNK_BYTES, "make_fixtures.py's TEXT_CHUNK_BYTES is out of step");
    for name in ["big_straddle.csv", "big_straddle.json"] {
        let e = entries("load").into_iter().find(|e| e["file"] == name).expect("big file in manifest");
        let (result, asked) = read_recording(&dir.join(name), None);
        assert!(asked.len() >= 2, "{name}: read in {} pieces, expected several chunks", asked.len());
        let cube = result.unwrap_or_else(|err| panic!("{name}: {err}"));
        let bad = check_cube(&cube, e);
        assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
        // The record cut by the chunk boundary keeps its token whole.
        let p = &cube.prompts[0];
        let t = p.token(1500).unwrap_or_else(|| panic!("{name}: the straddling token is missing"));
        assert!(t.starts_with("xxxx") || t.starts_with("yyyy"), "{name}: straddling token {t:?}");
        assert!(t.ends_with("a\r\nb\"c") || t.ends_with("q\"\n\\z"), "{name}: straddling token cut: {:?}", &t[t.len().saturating_sub(12)..]);
    }
}

#[test]
fn parquet_reads_only_the_needed_column_chunks() {
    let dir = fixtures();
    let e = entries("load").into_iter().find(|e| e["file"] == "pyarrow_big_extra_text.parquet").expect("in manifest");
    let unneeded: Vec<(u64, u64)> = e["unneeded_ranges"]
        .as_array()
        .expect("unneeded_ranges")
        .iter()
        .map(|r| (r[0].as_u64().expect("start"), r[1].as_u64().expect("end")))
        .collect();
    assert!(!unneeded.is_empty());
    let path = dir.join("pyarrow_big_extra_text.parquet");
    let file_len = std::fs::metadata(&path).expect("fixture").len();
    let (result, asked) = read_recording(&path, None);
    let cube = result.expect("loads");
    assert!(check_cube(&cube, e).is_empty());
    for r in &asked {
        for &(s, t) in &unneeded {
            assert!(r.end <= s || r.start >= t, "range {r:?} overlaps the unneeded column chunk {s}..{t}");
        }
    }
    let read: u64 = asked.iter().map(|r| r.end - r.start).sum();
    let skipped: u64 = unneeded.iter().map(|(s, t)| t - s).sum();
    assert!(skipped > file_len / 2, "the extra column should be most of the file");
    // Besides the needed chunks and the footer, only the first bytes are read, to sniff the format.
    assert!(read <= file_len - skipped + ingest::SNIFF_BYTES, "read {read} bytes of {file_len}, {skipped} of them unneeded");
}

#[test]
fn real_file_matches_pyarrow() {
    let real = &manifest()["real"];
    let Some(path) = real["file"].as_str() else {
        eprintln!("SKIPPED real_file_matches_pyarrow: ../shared/fixtures/real/image_question_hair.parquet is absent");
        return;
    };
    let cube = ingest::read_path(Path::new(path)).expect("the real file loads");
    assert_eq!(
        (cube.steps.len(), cube.layers.len(), cube.prompts[0].n_positions(), cube.variants.len()),
        (2, 36, 285, 34)
    );
    assert_eq!(cube.rows_read, 696_456);
    let v: Vec<&str> = cube.variants.iter().map(String::as_str).collect();
    assert_eq!(&v[..4], ["Full", "Attn", "Head_0", "Head_1"]);
    assert_eq!(v[33], "Head_31");
    let image = (0..285).filter(|&i| cube.prompts[0].token(i) == Some("<|image_pad|>")).count();
    assert_eq!(image, 256);
    let bad = check_cube(&cube, real);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The decode worker's warm-up samples (`src/web/warmup/`, written by its `make_samples.py`)
/// load, with the shape and values that script wrote (worked out here from its formulas): a
/// sample that stopped loading would leave the warm-up silently doing nothing.
#[test]
fn warmup_samples_load_with_the_values_written() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/warmup");
    // numpy's `round(x, 4)` (halves to even), then float32.
    let round4 = |x: f64| ((x * 1e4).round_ties_even() / 1e4) as f32;
    let variants = ["Full", "Attn", "Head_0", "Head_1"];
    for (name, distinct) in [("pandas-snappy.parquet", 1024), ("pandas-zstd.parquet", 2048), ("mask-impact.parquet", 1024)] {
        let cube = ingest::read_path(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cube.rows_read, 28_800, "{name}");
        assert_eq!((cube.steps.clone(), cube.layers.len(), cube.prompts[0].n_positions()), (vec![0, 1, 2], 8, 300), "{name}");
        assert_eq!(cube.variants, variants, "{name}");
        assert_eq!(cube.prompts[0].token(0), Some("<|im_start|>"), "{name}");
        assert_eq!((3..259).filter(|&p| cube.prompts[0].token(p) == Some("<|image_pad|>")).count(), 256, "{name}");
        let (l2, cos) = (cube.metric_index("l2_distance").unwrap(), cube.metric_index("cosine_distance").unwrap());
        // Rows in the script's order: step, layer, position, variant.
        for i in (0..28_800).step_by(7) {
            let (s, l, p, v) = (i / 9600, i / 1200 % 8, i / 4 % 300, i % 4);
            let cycle = (i * 7919) % distinct;
            let at = cube.cell(0, s, v, l);
            let sink = if p == 0 { 40.0 } else { 0.0 };
            assert_eq!(cube.value(l2, at, p), Some(round4(0.5 + cycle as f64 * 0.0137 + sink)), "{name} row {i} l2");
            assert_eq!(cube.value(cos, at, p), Some(round4((cycle % 512) as f64 / 600.0)), "{name} row {i} cosine");
        }
    }
}

/// A pandas `orient="columns"` file handed over whole (as the CLI maps its input) is read in
/// place, a cursor per column, to the values pandas reads from it.
#[test]
fn columns_files_handed_over_whole_read_in_place_with_pandas_values() {
    struct Sink {
        file: String,
        builder: CubeBuilder,
    }
    impl ingest::BatchSink for Sink {
        fn begin(&mut self, schema: &arrow_schema::SchemaRef) -> Result<(), ingest::IngestError> {
            self.builder.begin_source(&self.file, schema)?;
            Ok(())
        }
        fn batch(&mut self, batch: arrow_array::RecordBatch) -> Result<(), ingest::IngestError> {
            Ok(self.builder.push_batch(&batch)?)
        }
    }
    let dir = fixtures();
    let mut failures = Vec::new();
    let mut checked = 0;
    for e in entries("load") {
        let file = e["file"].as_str().expect("file");
        if !(file.contains("columns") && file.ends_with(".json")) {
            continue;
        }
        let data = std::fs::read(dir.join(file)).expect("fixture readable");
        let mut decoder = ingest::TextDecoder::new(file, data.len() as u64, ingest::Format::Json);
        let mut sink = Sink { file: file.to_string(), builder: CubeBuilder::new() };
        match decoder.decode_whole(&data, &mut sink, &mut |_| {}) {
            Ok(true) => match sink.builder.finish() {
                Ok(cube) => failures.extend(check_cube(&cube, e).into_iter().map(|d| format!("{file}: {d}"))),
                Err(err) => failures.push(format!("{file}: {err}")),
            },
            Ok(false) => failures.push(format!("{file}: not read in place")),
            Err(err) => failures.push(format!("{file}: {err}")),
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 2, "only {checked} columns files");
}
