//! End-to-end tests of the `mask-impact` binary. Outputs are checked by an independent reader:
//! `tests/cli/check.py` (pyarrow, pandas, polars, duckdb), run with `python3`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_mask-impact");
const REAL: &str = "../shared/fixtures/real/image_question_hair.parquet";

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mask-impact-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run mask-impact")
}

fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "mask-impact {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a check of tests/cli/check.py; it exits non-zero with a message when the check fails.
fn python_check(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/check.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect(
            "python3 is needed for the CLI checks (pip install pyarrow pandas polars duckdb numpy)",
        );
    assert!(
        out.status.success(),
        "check.py {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names in a folder, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn convert_csv_json_jsonl_round_trip() {
    let dir = scratch("roundtrip");
    python_check(&["make-input", s(&dir)]);
    for input in ["in.csv", "in.json", "in.jsonl", "in.columns.json", "in.split.json"] {
        let src = dir.join(input);
        let out = dir.join(format!("{input}.parquet"));
        let o = run_ok(&["convert", s(&src), "-o", s(&out), "--json"]);
        let table: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        // 3 steps × 5 layers × (12 + 13 + 14) positions × 4 variants, one row missing.
        assert_eq!(table[0]["rows"], 5 * 4 * (12 + 13 + 14) - 1, "{input}");
        // The layout is chosen by measuring (auto): whole steps per row group either way.
        let groups = table[0]["row_groups"].as_u64().unwrap();
        assert!(groups == 1 || groups == 3, "{input}: {groups} row groups");
        python_check(&["roundtrip", s(&src), s(&out), "4"]);
    }
    // `inspect` names the orient of a JSON file written in another than records.
    for (input, said) in [("in.split.json", Some("split")), ("in.columns.json", Some("columns")), ("in.json", None)] {
        let o = run_ok(&["inspect", s(&dir.join(input)), "--json"]);
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["json_orient"].as_str(), said, "{input}");
        let text = String::from_utf8(run_ok(&["inspect", s(&dir.join(input))]).stdout).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(first.contains(&format!("JSON, pandas orient=\"{}\"", said.unwrap_or("records"))), said.is_some(), "{input}: {first}");
    }
    // Row groups as asked: one per step, or steps sharing (all 3 small steps fit in one), in
    // each row order; pyarrow, pandas, polars and DuckDB read back the same values.
    let src = dir.join("in.csv");
    for (row_groups, expected) in [("per-step", "3"), ("shared", "1")] {
        for order in [
            "layer-variant-position",
            "position-variant-layer",
            "layer-position-variant",
        ] {
            let out = dir.join(format!("{row_groups}-{order}.parquet"));
            run_ok(&[
                "convert",
                s(&src),
                "-o",
                s(&out),
                "--row-groups",
                row_groups,
                "--order",
                order,
            ]);
            python_check(&["row-groups", s(&out), expected]);
            python_check(&["roundtrip", s(&src), s(&out), "4"]);
        }
    }
    // A shared row group holds at most about --row-group-rows rows: one step each here.
    let out = dir.join("small-groups.parquet");
    run_ok(&[
        "convert",
        s(&src),
        "-o",
        s(&out),
        "--row-groups",
        "shared",
        "--row-group-rows",
        "100",
    ]);
    python_check(&["row-groups", s(&out), "3"]);
    // Other decimals, and no rounding.
    let src = dir.join("in.csv");
    let out = dir.join("d2.parquet");
    run_ok(&[
        "convert",
        s(&src),
        "-o",
        s(&out),
        "--decimals",
        "2",
        "--order",
        "variant-layer-position",
    ]);
    python_check(&["roundtrip", s(&src), s(&out), "2"]);
    run_ok(&[
        "convert",
        s(&src),
        "-o",
        s(&out),
        "--no-round",
        "--float-encoding",
        "byte-stream-split",
    ]);
    python_check(&["roundtrip", s(&src), s(&out), "none"]);
    // Plain metric pages: what a metric column falls back to past a million distinct values.
    run_ok(&[
        "convert",
        s(&src),
        "-o",
        s(&out),
        "--float-encoding",
        "plain",
    ]);
    python_check(&["roundtrip", s(&src), s(&out), "4"]);
    // A Parquet input converts too, and --csv writes a CSV pandas reads back the same.
    let again = dir.join("again.parquet");
    run_ok(&[
        "convert",
        s(&dir.join("in.json.parquet")),
        "-o",
        s(&again),
        "--csv",
        "--quiet",
    ]);
    python_check(&["roundtrip", s(&src), s(&again), "4"]);
    python_check(&["roundtrip", s(&dir.join("again.csv")), s(&again), "4"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Metric dictionaries are stored sorted with their indices widened to 8 or 16 bits, or kept
/// at their width above 16 (src/cli/dictionary.rs): a file with more than 65 536
/// distinct values (17-bit indices) and one with a few thousand read back the same in every
/// reader, in both row-group layouts.
#[test]
fn convert_wide_dictionaries_round_trip() {
    let dir = scratch("wide");
    python_check(&["make-wide-input", s(&dir)]);
    let src = dir.join("wide.csv");
    for (row_groups, expected) in [("shared", "1"), ("per-step", "2")] {
        let out = dir.join(format!("wide-{row_groups}.parquet"));
        run_ok(&[
            "convert",
            s(&src),
            "-o",
            s(&out),
            "--row-groups",
            row_groups,
        ]);
        python_check(&["row-groups", s(&out), expected]);
        python_check(&["roundtrip", s(&src), s(&out), "4"]);
        // Our own Parquet ingest (the viewer's) reads it as pyarrow does.
        let o = run_ok(&["inspect", s(&out), "--json"]);
        let report = dir.join("report.json");
        std::fs::write(&report, &o.stdout).unwrap();
        python_check(&["inspect", s(&out), s(&report)]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// CSV and JSON compressed with gzip (as pandas writes `results.csv.gz`; here two members) or
/// zstd convert to the values of the plain files; a compressed Parquet file and a cut gzip
/// stream are refused, the file named, nothing written.
#[test]
fn convert_compressed_text_inputs() {
    let dir = scratch("compressed");
    python_check(&["make-input", s(&dir)]);
    for plain in ["in.csv", "in.json"] {
        python_check(&["gzip", s(&dir.join(plain)), s(&dir.join(format!("{plain}.gz")))]);
    }
    let jsonl = std::fs::read(dir.join("in.jsonl")).unwrap();
    std::fs::write(dir.join("in.jsonl.zst"), zstd::encode_all(&jsonl[..], 3).unwrap()).unwrap();
    for (input, plain) in [("in.csv.gz", "in.csv"), ("in.json.gz", "in.json"), ("in.jsonl.zst", "in.jsonl")] {
        let out = dir.join(format!("{input}.parquet"));
        let o = run_ok(&["convert", s(&dir.join(input)), "-o", s(&out), "--json"]);
        let table: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(table[0]["rows"], 5 * 4 * (12 + 13 + 14) - 1, "{input}");
        python_check(&["roundtrip", s(&dir.join(plain)), s(&out), "4"]);
    }
    let refused = |input: &Path, expect: &str| {
        let out = dir.join("refused.parquet");
        let o = run(&["convert", s(input), "-o", s(&out)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{} converted", input.display());
        assert!(err.contains(s(input)) && err.contains(expect), "{err}");
        assert!(!out.exists());
    };
    let gz = std::fs::read(dir.join("in.csv.gz")).unwrap();
    let cut = dir.join("cut.csv.gz");
    std::fs::write(&cut, &gz[..gz.len() / 4]).unwrap();
    refused(&cut, "cannot decompress it (gzip)");
    let parquet_gz = dir.join("in.parquet.gz");
    python_check(&["gzip", s(&dir.join("in.csv.gz.parquet")), s(&parquet_gz)]);
    refused(&parquet_gz, "gzip-compressed Parquet file");
}

#[test]
fn convert_partitioned_by_step() {
    let dir = scratch("partition");
    python_check(&["make-input", s(&dir)]);
    let out = dir.join("parts");
    run_ok(&[
        "convert",
        s(&dir.join("in.json")),
        "-o",
        s(&out),
        "--partition-by",
        "generation_step",
    ]);
    python_check(&["partitioned", s(&dir.join("in.json")), s(&out), "4"]);
    // Converting again replaces the folder whole.
    run_ok(&[
        "convert",
        s(&dir.join("in.csv")),
        "-o",
        s(&out),
        "--partition-by",
        "generation_step",
    ]);
    python_check(&["partitioned", s(&dir.join("in.csv")), s(&out), "4"]);
    // The folder reads back (each file's step from its folder's name), as do the ones pyarrow
    // writes partitioned by step and variant, as Parquet and as CSV.
    let back = dir.join("back.parquet");
    // A link back up the tree inside the folder is not followed.
    #[cfg(unix)]
    std::os::unix::fs::symlink("..", out.join("generation_step=0").join("up")).unwrap();
    run_ok(&["convert", s(&out), "-o", s(&back)]);
    python_check(&["roundtrip", s(&dir.join("in.csv")), s(&back), "4"]);
    for format in ["parquet", "csv"] {
        let theirs = dir.join(format!("theirs-{format}"));
        python_check(&["hive", s(&dir.join("in.csv")), s(&theirs), format]);
        run_ok(&["convert", s(&theirs), "-o", s(&back)]);
        python_check(&["roundtrip", s(&dir.join("in.csv")), s(&back), "4"]);
        let report = run_ok(&["inspect", s(&theirs), "--json"]);
        let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
        assert!(report["files"].as_array().is_some_and(|f| f.len() > 2), "{report}");
    }
    assert!(
        !listing(&dir).iter().any(|n| n.starts_with('.')),
        "{:?}",
        listing(&dir)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspect_real_file_matches_pyarrow() {
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join(REAL);
    if !real.exists() {
        eprintln!("skipped: the real fixture {} is absent", real.display());
        return;
    }
    let dir = scratch("inspect");
    let o = run_ok(&["inspect", s(&real), "--json"]);
    let report = dir.join("report.json");
    std::fs::write(&report, &o.stdout).unwrap();
    python_check(&["inspect", s(&real), s(&report)]);
    // The human form names the writer and a square image grid.
    let o = run_ok(&["inspect", s(&real)]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("parquet-cpp-arrow"), "{text}");
    assert!(text.contains("image tokens"), "{text}");
    // And the real file converts, readable by every reader, row groups holding whole steps.
    let out = dir.join("real.parquet");
    run_ok(&["convert", s(&real), "-o", s(&out)]);
    python_check(&["roundtrip", s(&real), s(&out), "4"]);
    // Our own Parquet ingest (the viewer's) reads the converted file: counts, ranges and
    // shape agree with pyarrow.
    let o = run_ok(&["inspect", s(&out), "--json"]);
    std::fs::write(&report, &o.stdout).unwrap();
    python_check(&["inspect", s(&out), s(&report)]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspect_reports_problems() {
    let dir = scratch("problems");
    // A duplicate row, a NaN, a missing cell, a 3-token (non-square) image block, and
    // infinite values (as pandas writes them to CSV).
    let csv = "generation_step,layer,token_masked,token_position,variant,l2_distance,cosine_distance\n\
        0,0,<|image_pad|>,0,Full,1.0,0.1\n0,0,<|image_pad|>,1,Full,2.0,inf\n0,0,<|image_pad|>,2,Full,,\n\
        0,1,<|image_pad|>,0,Full,4.0,-inf\n0,1,<|image_pad|>,1,Full,5.0,inf\n0,1,<|image_pad|>,1,Full,6.0,0.6\n";
    let path = dir.join("p.csv");
    std::fs::write(&path, csv).unwrap();
    let o = run_ok(&["inspect", s(&path), "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["rows"], 6);
    assert_eq!(r["duplicates"], 1);
    assert_eq!(r["grid_cells"], 6);
    // (0,2) holds NaN and (1,2) has no row.
    assert_eq!(r["missing_cells"], 2);
    assert_eq!(r["metrics"][0]["null_or_nan_rows"], 1);
    assert_eq!(r["metrics"][0]["values"], 4);
    assert_eq!(r["metrics"][0]["max"], 6.0);
    assert_eq!(r["metrics"][0]["infinite_values"], 0);
    // The later of the repeated rows is kept: 0.6, not inf.
    assert_eq!(r["metrics"][1]["values"], 4);
    assert_eq!(r["metrics"][1]["infinite_values"], 2);
    let problems = r["problems"].to_string();
    assert!(problems.contains("cosine_distance: 2 values are infinite"), "{problems}");
    assert!(problems.contains("not a square number"), "{problems}");
    assert!(problems.contains("repeat"), "{problems}");

    // Converting the same file says which rows are not in the output, and why: on stderr,
    // naming the file, and in the --json table.
    let out = dir.join("p.parquet");
    let o = run_ok(&["convert", s(&path), "-o", s(&out), "--json"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let name = path.display().to_string();
    assert!(
        stderr.contains(&format!("warning: {name}: 1 rows repeat a (step, prompt, variant, layer, position) already seen; the later value is kept")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("warning: {name}: 1 rows have no value in any metric (null or NaN) and are not written")),
        "{stderr}"
    );
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // 6 rows: one repeats (1,1), one holds NaN; 4 are written.
    assert_eq!(t[0]["rows"], 4);
    assert_eq!(t[0]["warnings"].as_array().map(Vec::len), Some(2), "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generate_shapes_read_by_pandas() {
    let dir = scratch("generate");
    for (fmt, ext) in [
        ("parquet", "parquet"),
        ("csv", "csv"),
        ("json", "json"),
        ("jsonl", "jsonl"),
    ] {
        let out = dir.join(format!("g.{ext}"));
        run_ok(&[
            "generate",
            "--steps",
            "2",
            "--layers",
            "3",
            "--positions",
            "40",
            "--variants",
            "2",
            "--image-grid",
            "4x4",
            "--seed",
            "3",
            "-o",
            s(&out),
        ]);
        python_check(&["generate", s(&out), fmt, "2", "3", "40", "2", "4x4", "1"]);
    }
    let out = dir.join("multi.csv");
    run_ok(&[
        "generate",
        "--steps",
        "1",
        "--layers",
        "2",
        "--positions",
        "30",
        "--variants",
        "0",
        "--image-grid",
        "none",
        "--prompts",
        "2",
        "-o",
        s(&out),
    ]);
    python_check(&["generate", s(&out), "csv", "1", "2", "30", "0", "none", "2"]);
    // Deterministic: the same seed gives the same bytes.
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    for p in [&a, &b] {
        run_ok(&[
            "generate",
            "--steps",
            "1",
            "--layers",
            "2",
            "--positions",
            "20",
            "--image-grid",
            "3x3",
            "-o",
            s(p),
        ]);
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Large CSV/JSON files are cut into segments decoded side by side (src/cli/parallel.rs):
/// with small segments (forced by `MASK_IMPACT_SEGMENT_BYTES`), the three text layouts still
/// read back as pandas reads the input: tokens with commas, quotes and line breaks, NaN cells
/// and a missing row.
#[test]
fn convert_split_text_files_round_trip() {
    let dir = scratch("split");
    python_check(&["make-input", s(&dir)]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for input in ["in.csv", "in.json", "in.jsonl"] {
        let src = dir.join(input);
        for segment in ["700", "5000"] {
            let out = dir.join(format!("{input}-{segment}.parquet"));
            let o = Command::new(BIN)
                .args(["convert", s(&src), "-o", s(&out), "--json"])
                .env("MASK_IMPACT_SEGMENT_BYTES", segment)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let table: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            // Split (not read again by one decoder) wherever there is more than one core.
            let threads = table[0]["decode_threads"].as_u64().unwrap();
            assert_eq!(
                threads,
                if cores > 1 { cores as u64 } else { 1 },
                "{input}, segments of {segment} bytes"
            );
            python_check(&["roundtrip", s(&src), s(&out), "4"]);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CSV cut is placed by the quotes near it, a guess that each segment's own quote count
/// checks. Here a quoted token of 150 kB that looks like records (seven fields a line, no
/// quotes) holds cut targets far from its ends, so some guesses are wrong: the counts must
/// catch that and the file be read again by one decoder, with the values pandas reads.
#[test]
fn convert_csv_cut_inside_a_long_quoted_field_reads_right() {
    let dir = scratch("long-quoted");
    python_check(&["make-long-quoted-input", s(&dir)]);
    // Converted in segments of `bytes`: read again by one decoder (a split read would report
    // every core), with the values pandas reads.
    let check = |src: &Path, bytes: &str| {
        let out = dir.join("out.parquet");
        let o = Command::new(BIN)
            .args(["convert", s(src), "-o", s(&out), "--json"])
            .env("MASK_IMPACT_SEGMENT_BYTES", bytes)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let table: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(table[0]["decode_threads"].as_u64(), Some(1));
        python_check(&["roundtrip", s(src), s(&out), "4"]);
    };
    check(&dir.join("long.csv"), "50000");

    // Worse: the long quoted text is the last field, holds lines of seven fields, and its
    // closing quote follows text (`b"`, which a lenient reader keeps as text). Cut inside it,
    // both segments decode without error, into wrong rows: only the quote count tells.
    let mut csv = String::from(
        "generation_step,layer,token_position,variant,l2_distance,cosine_distance,token_masked\n\
         0,0,0,Full,1.5,0.5,\"a\n",
    );
    for i in 1..=10_000 {
        csv.push_str(&format!("0,1,{i},Full,2.5,0.5,b\n"));
    }
    csv.pop();
    csv.push_str("\"\n");
    for p in 1..=2_000 {
        csv.push_str(&format!("0,0,{p},Full,1.5,0.25,x\n"));
    }
    let src = dir.join("last.csv");
    std::fs::write(&src, &csv).unwrap();
    check(&src, "20000");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_reported_and_leaves_no_partial_output() {
    let dir = scratch("bad");
    let mut csv =
        String::from("generation_step,layer,token_masked,token_position,variant,l2_distance\n");
    for i in 0..50 {
        csv.push_str(&format!("0,{},x,{},Full,1.5\n", i % 3, i));
    }
    csv.push_str("0,abc,x,7,Full,1.5\n");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, &csv).unwrap();
    // An earlier output stays as it was.
    let out = dir.join("bad.parquet");
    std::fs::write(&out, b"previous").unwrap();
    let o = run(&["convert", s(&bad), "-o", s(&out)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.csv"), "{err}");
    assert!(err.contains("abc"), "{err}");
    // The header is line 1, the 50 good rows lines 2–51.
    assert!(err.contains("line 52"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    assert_eq!(listing(&dir), ["bad.csv", "bad.parquet"]);
    // A folder without result files is refused before anything is read, naming it.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("_SUCCESS"), b"").unwrap();
    std::fs::write(sub.join("notes.txt"), b"not data").unwrap();
    let o = run(&["convert", s(&sub), "-o", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("sub: a folder with no result files"), "{err}");
    std::fs::remove_dir_all(&sub).unwrap();
    // A pipe is no file.
    #[cfg(unix)]
    {
        let o = run(&["inspect", "/dev/stdin"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("not a regular file or folder"), "{err}");
    }
    // A good conversion replaces it, and leaves nothing else behind.
    let good = dir.join("good.csv");
    std::fs::write(&good, csv.lines().take(51).collect::<Vec<_>>().join("\n")).unwrap();
    run_ok(&["convert", s(&good), "-o", s(&out)]);
    let written = std::fs::read(&out).unwrap();
    assert!(written.starts_with(b"PAR1") && written.ends_with(b"PAR1"));
    std::fs::write(&out, b"previous").unwrap();
    std::fs::remove_file(&good).unwrap();
    assert_eq!(listing(&dir), ["bad.csv", "bad.parquet"]);

    // A bad value far into a file (past the first 8 MB chunk and the first batches, decoded
    // on the reading thread) is reported with its line, counted from the file's start.
    let mut long =
        String::from("generation_step,layer,token_masked,token_position,variant,l2_distance\n");
    let rows = 400_000;
    for i in 0..rows {
        long.push_str(&format!(
            "{},{},tok,{},Full,1.5\n",
            i / 30_000,
            i % 30,
            (i / 30) % 1000
        ));
    }
    long.push_str("9,1,tok,5,Full,oops\n");
    assert!(long.len() > 8 << 20);
    let far = dir.join("far.csv");
    std::fs::write(&far, &long).unwrap();
    // Read in one piece, and cut into 1 MB segments (decoded side by side, then read again
    // by one decoder to find the line).
    for segment in [None, Some("1000000")] {
        let mut command = Command::new(BIN);
        command.args(["convert", s(&far), "-o", s(&dir.join("far.parquet"))]);
        if let Some(bytes) = segment {
            command.env("MASK_IMPACT_SEGMENT_BYTES", bytes);
        }
        let o = command.output().unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        // Line 1 is the header: the bad row is line rows + 2.
        assert!(
            err.contains("far.csv") && err.contains("oops"),
            "{segment:?}: {err}"
        );
        assert!(
            err.contains(&format!("line {}", rows + 2)),
            "{segment:?}: {err}"
        );
    }
    std::fs::remove_file(&far).unwrap();
    assert_eq!(listing(&dir), ["bad.csv", "bad.parquet"]);

    // Truncated JSON: an error naming the file, no output file.
    let json = dir.join("cut.json");
    std::fs::write(
        &json,
        br#"[{"layer":0,"token_position":0,"l2_distance":1.0},{"layer":0,"tok"#,
    )
    .unwrap();
    let o = run(&["convert", s(&json), "-o", s(&dir.join("cut.parquet"))]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cut.json"), "{err}");
    assert_eq!(listing(&dir), ["bad.csv", "bad.parquet", "cut.json"]);

    // Not a table at all.
    let png = dir.join("pic.csv");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n\0\0\0").unwrap();
    let o = run(&["convert", s(&png), "-o", s(&dir.join("pic.parquet"))]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("PNG image"));
    assert!(!dir.join("pic.parquet").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn render_draws_png_and_svg_figures() {
    let dir = scratch("render");
    let csv = dir.join("tiny.csv");
    // Two layers × three positions; per-row maxima (position 0 excluded): layer 0 → 4.0 at
    // position 2, layer 1 → 8.0 at position 1. Those cells are the top of the 21-level reds map,
    // pure red; position 2 of layer 1 (0.0) is white.
    std::fs::write(
        &csv,
        "layer,token_position,token_masked,l2_distance\n0,0,<s>,100\n0,1,a,2\n0,2,b,4\n1,0,<s>,100\n1,1,a,8\n1,2,b,0\n",
    )
    .unwrap();
    let png_path = dir.join("fig.png");
    run_ok(&[
        "render",
        s(&csv),
        "--metric",
        "l2_distance",
        "-o",
        s(&png_path),
        "--width",
        "640",
        "--height",
        "360",
        "-q",
    ]);
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (640, 360));
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let red = pixels
        .iter()
        .filter(|p| p[0] == 255 && p[1] == 0 && p[2] == 0)
        .count();
    assert!(
        red > 100,
        "the row maxima are drawn pure red ({red} pixels)"
    );

    let svg_path = dir.join("fig.svg");
    run_ok(&["render", s(&csv), "-o", s(&svg_path), "-q"]);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.contains("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.contains("l2_distance"));

    let o = run(&[
        "render",
        s(&csv),
        "--variant",
        "Head_9",
        "-o",
        s(&dir.join("x.png")),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no variant `Head_9`"));
    assert!(!dir.join("x.png").exists());
}
