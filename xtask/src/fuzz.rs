//! `cargo xtask fuzz [--seconds N] [--target NAME]`: run the ingest fuzz targets of `fuzz/`
//! (cargo-fuzz layout) for a bounded time each and report what they found.
//!
//! Installs `cargo-fuzz` when it is missing. libFuzzer needs nightly-only flags; we have a
//! stable toolchain, so it runs with `RUSTC_BOOTSTRAP=1`. Each target starts from a corpus
//! seeded with the generated fixtures of its format (`tests/fixtures/generated/`, when present).
//! Crashes land in `fuzz/artifacts/<target>/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The fuzz targets and the fixture extensions that seed their corpus.
const TARGETS: [(&str, &[&str]); 3] = [
    ("ingest_parquet", &["parquet"]),
    ("ingest_csv", &["csv"]),
    ("ingest_json", &["json", "ndjson"]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is in the workspace").to_path_buf()
}

fn has_cargo_fuzz() -> bool {
    Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success())
}

/// Copies small fixture files of the given extensions into the corpus folder.
fn seed_corpus(corpus: &Path, exts: &[&str]) -> Result<usize> {
    std::fs::create_dir_all(corpus)?;
    let fixtures = root().join("tests/fixtures/generated");
    let mut n = 0;
    let Ok(dir) = std::fs::read_dir(&fixtures) else { return Ok(0) };
    for entry in dir.flatten() {
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let small = entry.metadata().map(|m| m.len() <= 256 << 10).unwrap_or(false);
        if exts.contains(&ext) && small && path.file_name().is_some_and(|f| f != "manifest.json") {
            let name = path.file_name().expect("file name");
            std::fs::copy(&path, corpus.join(name))?;
            n += 1;
        }
    }
    Ok(n)
}

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds: u64 = 60;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().context("--seconds needs a number")?.parse().context("--seconds N")?,
            "--target" => only = Some(it.next().context("--target needs a name")?.clone()),
            other => bail!("unknown option `{other}` (usage: cargo xtask fuzz [--seconds N] [--target NAME])"),
        }
    }
    if !has_cargo_fuzz() {
        eprintln!("xtask fuzz: installing cargo-fuzz");
        let ok = Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]).status()?.success();
        if !ok || !has_cargo_fuzz() {
            bail!("could not install cargo-fuzz (`cargo install cargo-fuzz`)");
        }
    }
    let fuzz_dir = root().join("fuzz");
    let mut findings = Vec::new();
    for (target, exts) in TARGETS {
        if only.as_deref().is_some_and(|o| o != target) {
            continue;
        }
        let corpus = fuzz_dir.join("corpus").join(target);
        let seeded = seed_corpus(&corpus, exts)?;
        eprintln!("xtask fuzz: {target} for {seconds} s ({seeded} seed files)");
        let status = Command::new("cargo")
            .current_dir(root())
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--fuzz-dir", "fuzz", target])
            .arg(&corpus)
            .args(["--", &format!("-max_total_time={seconds}"), "-rss_limit_mb=4096", "-timeout=20", "-max_len=1048576"])
            .status()
            .with_context(|| format!("running cargo fuzz for {target}"))?;
        if !status.success() {
            findings.push(format!(
                "{target}: libFuzzer stopped on a finding ({status}); see fuzz/artifacts/{target}/ and reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz {target} <artifact>`"
            ));
        }
    }
    if findings.is_empty() {
        println!("xtask fuzz: no findings ({seconds} s per target)");
        Ok(())
    } else {
        bail!("fuzzing found problems:\n{}", findings.join("\n"))
    }
}
