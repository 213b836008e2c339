//! Bad inputs give an `Err` naming the file and the problem (never a panic or hang), and
//! mutated or truncated files never panic.

mod ingest_common;

use std::sync::Arc;

use arrow_array::{Float32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use ingest_common::{entries, fixtures};
use mask_impact::ingest;
use proptest::prelude::*;

#[test]
fn every_bad_input_fails_with_a_clear_message() {
    let dir = fixtures();
    let mut failures = Vec::new();
    for e in entries("fail") {
        let file = e["file"].as_str().expect("file");
        let want = e["error"].as_str().expect("error");
        let path = dir.join(file);
        let bytes = std::fs::read(&path).expect("fixture readable");
        // By byte ranges from disk, and from memory.
        for (how, result) in [("read_path", ingest::read_path(&path)), ("read_bytes", ingest::read_bytes(file, &bytes))] {
            match result {
                Ok(cube) => failures.push(format!("{file} ({how}): loaded ({} rows) but should fail with {want:?}", cube.rows_read)),
                Err(err) => {
                    let msg = err.to_string();
                    if how == "read_path" {
                        eprintln!("{file}: {}", msg.rsplit_once(file).map_or(msg.as_str(), |(_, m)| m));
                    }
                    if !msg.contains(file) || !msg.contains(want) {
                        failures.push(format!("{file} ({how}): message {msg:?} should name the file and contain {want:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

/// A small valid Parquet file written by arrow-rs (the seed of the mutations).
fn parquet_seed(compression: parquet::basic::Compression) -> Vec<u8> {
    let n = 300;
    let schema = Arc::new(Schema::new(vec![
        Field::new("generation_step", DataType::Int64, false),
        Field::new("layer", DataType::Int64, false),
        Field::new("token_position", DataType::Int64, false),
        Field::new("token_masked", DataType::Utf8, true),
        Field::new("variant", DataType::Utf8, true),
        Field::new("l2_distance", DataType::Float32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 2))),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i / 30))),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 15))),
            Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("t{}", i % 15)))),
            Arc::new(StringArray::from_iter_values((0..n).map(|i| if i % 3 == 0 { "Full" } else { "Attn" }))),
            Arc::new(Float32Array::from_iter((0..n).map(|i| (i % 7 != 0).then_some(i as f32 * 0.5)))),
        ],
    )
    .expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(120))
        .build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    out
}

const CSV_SEED: &str = "generation_step,layer,token_masked,token_position,variant,l2_distance\n\
0,0,\"a,b\",0,Full,1.5\n0,0,\"say \"\"hi\"\"\",1,Full,\n0,0,\"x\ny\",2,Attn,NaN\n1,2,z,3,Head_0,2.25\n";
const JSON_SEED: &str = r#"[{"generation_step":0,"layer":0,"token_masked":"a,b","token_position":0,"variant":"Full","l2_distance":1.5},
{"generation_step":0,"layer":1,"token_masked":"q\"\n","token_position":1,"variant":"Attn","l2_distance":null},
{"generation_step":1,"layer":1,"token_masked":"z","token_position":2,"variant":"Head_0","l2_distance":"NaN"}]"#;

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use parquet::basic::{Compression, ZstdLevel};
    vec![
        ("m.parquet", parquet_seed(Compression::SNAPPY)),
        ("m.parquet", parquet_seed(Compression::ZSTD(ZstdLevel::default()))),
        ("m.parquet", parquet_seed(Compression::UNCOMPRESSED)),
        ("m.csv", CSV_SEED.as_bytes().to_vec()),
        ("m.json", JSON_SEED.as_bytes().to_vec()),
        ("m.json", JSON_SEED.replace(",\n", "\n").trim_start_matches('[').trim_end_matches(']').as_bytes().to_vec()),
    ]
}

#[test]
fn seeds_load() {
    for (name, bytes) in seeds() {
        let cube = ingest::read_bytes(name, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(cube.rows_read >= 3, "{name}");
    }
}

/// Mutates `bytes`: overwrite, truncate, insert or delete.
fn mutate(mut bytes: Vec<u8>, edits: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(kind, at, value) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match kind % 5 {
            0 | 1 => bytes[at] = value,
            2 => bytes.truncate(at),
            3 => bytes.insert(at, value),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, rng_seed: proptest::test_runner::RngSeed::Fixed(0x6d61_736b), ..ProptestConfig::default() })]

    /// Mutated and truncated files give `Ok` or `Err`, never a panic.
    #[test]
    fn mutated_files_never_panic(seed in 0usize..6, edits in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)) {
        let (name, bytes) = seeds().swap_remove(seed);
        let bytes = mutate(bytes, &edits);
        match ingest::read_bytes(name, &bytes) {
            Ok(cube) => prop_assert!(cube.n_cells() > 0),
            Err(e) => prop_assert!(e.to_string().starts_with(name), "{e}"),
        }
    }
}
