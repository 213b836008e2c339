//! Native ingest throughput on synthetic data: `cargo run --release --example ingest_throughput [STEPS]`.
//!
//! Writes the same synthetic result set (`mask_impact::synth`, seed-scale shape with STEPS
//! generation steps, default 5 ≈ 380k rows) as CSV, JSON (array of records, as pandas
//! `orient="records"`) and Parquet (zstd) in memory, then reads each back with
//! `ingest::read_bytes` and prints rows/s and MB/s.
//!
//! `ingest_throughput FILE` instead streams FILE from disk in chunks (`ingest::read_path`, as
//! the worker does with `Blob.slice`) and prints the time, the cube's size and the peak
//! resident memory of the process (`VmHWM`): the native counterpart of the worker's peak.

use std::time::Instant;

use mask_impact::ingest;
use mask_impact::synth::{Synth, SynthConfig};

/// Peak resident set of this process, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    if let Some(path) = std::env::args().nth(1).filter(|a| std::path::Path::new(a).is_file()) {
        let t = Instant::now();
        let cube = ingest::read_path(std::path::Path::new(&path)).expect("loads");
        let secs = t.elapsed().as_secs_f64();
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let cube_bytes: usize = cube.metrics.iter().map(|m| m.values.len() * 4).sum();
        println!(
            "{path}: {} rows, {:.1} MB in {secs:.3} s = {:.1} MB/s; cube values {:.1} MiB; peak RSS {:.1} MiB",
            cube.rows_read,
            len as f64 / 1e6,
            len as f64 / secs / 1e6,
            cube_bytes as f64 / (1 << 20) as f64,
            peak_rss_kib().unwrap_or(0) as f64 / 1024.0
        );
        if std::env::var_os("COMPARE").is_some() {
            // The same file through arrow-csv / arrow-json only: every cell must be the same.
            let bytes = bytes::Bytes::from(std::fs::read(&path).expect("reads"));
            let mut ingest = ingest::Ingest::new(&path, bytes.len() as u64).with_text_fast_path(false);
            ingest::drive(&mut ingest, |r| Ok(bytes.slice(r.start as usize..r.end as usize)), |_| true).expect("loads");
            let general = ingest.finish().expect("cube");
            assert_eq!(general.rows_read, cube.rows_read);
            assert_eq!((&general.steps, &general.layers, &general.variants), (&cube.steps, &cube.layers, &cube.variants));
            for (a, b) in general.prompts.iter().zip(&cube.prompts) {
                assert_eq!((&a.name, &a.text, &a.tokens), (&b.name, &b.text, &b.tokens));
            }
            for (a, b) in general.metrics.iter().zip(&cube.metrics) {
                assert_eq!(a.name, b.name);
                let same = a.values.values().iter().zip(b.values.values()).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{}: values differ", a.name);
            }
            println!("same cube as arrow-csv / arrow-json alone");
        }
        return;
    }
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let config = SynthConfig { steps, ..SynthConfig::seed_scale() };
    let rows = config.rows();
    let batches: Vec<_> = Synth::new(config).collect();
    let schema = batches[0].schema();
    // Text writers want plain strings: cast dictionary columns.
    let plain: Vec<_> = batches
        .iter()
        .map(|b| {
            let cols = b
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    arrow_schema::DataType::Dictionary(_, _) => arrow_cast::cast(c, &arrow_schema::DataType::Utf8).expect("cast"),
                    _ => c.clone(),
                })
                .collect::<Vec<_>>();
            let fields: Vec<_> = b.schema().fields().iter().zip(&cols).map(|(f, c)| arrow_schema::Field::new(f.name(), c.data_type().clone(), true)).collect();
            arrow_array::RecordBatch::try_new(std::sync::Arc::new(arrow_schema::Schema::new(fields)), cols).expect("batch")
        })
        .collect();

    let mut csv = Vec::new();
    {
        let mut w = arrow_csv::WriterBuilder::new().with_header(true).build(&mut csv);
        for b in &plain {
            w.write(b).expect("csv");
        }
    }
    let mut json = Vec::new();
    {
        let mut w = arrow_json::ArrayWriter::new(&mut json);
        for b in &plain {
            w.write(b).expect("json");
        }
        w.finish().expect("json");
    }
    let mut pq = Vec::new();
    {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut pq, schema, Some(props)).expect("parquet");
        for b in &batches {
            w.write(b).expect("parquet");
        }
        w.close().expect("parquet");
    }
    println!("{rows} rows");
    for (name, bytes) in [("data.csv", &csv), ("data.json", &json), ("data.parquet", &pq)] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let cube = ingest::read_bytes(name, bytes).expect("loads");
            best = best.min(t.elapsed().as_secs_f64());
            assert_eq!(cube.rows_read as usize, rows);
        }
        println!(
            "{name:>13}: {:>7.1} MB in {:>6.3} s = {:>5.2} M rows/s, {:>6.1} MB/s (best of 3)",
            bytes.len() as f64 / 1e6,
            best,
            rows as f64 / best / 1e6,
            bytes.len() as f64 / best / 1e6
        );
    }
}
