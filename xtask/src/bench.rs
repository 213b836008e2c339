//! `cargo xtask bench [--quick] [--no-cli] [--only=FILE_ID,…] [--readers=ours,arrow,hyparquet,text]`:
//! measures our page side by side with the stack it replaces and rewrites `BENCHMARKS.md`.
//!
//! The steps, each of which a fresh clone needs:
//! 1. `npm ci` in `bench/` (the baselines `parquet-wasm`, `apache-arrow`, `hyparquet`,
//!    `hyparquet-compressors`, the driver `puppeteer-core`, the bundler `esbuild`; pinned by
//!    `bench/package-lock.json`);
//! 2. python3 with pandas + pyarrow (the users' writer, for the data files and the conversion
//!    baseline), installed with pip when missing, and pandas 2.2 in a venv
//!    (`target/bench-pandas2`), timed beside it for context;
//! 3. the data generator `bench/synth` (`mask_impact::synth` → Parquet), release build in
//!    `target/bench-synth`;
//! 4. our page (`cargo xtask dist` → `dist/`) and the CLI (`cargo build --release`);
//! 5. `node bench/run.mjs`, which generates or reuses the data in `bench/data/` (cached by
//!    parameters and generator source), serves `dist/` and the baseline pages on 127.0.0.1,
//!    drives headless Chromium, times the CLI against pandas and writes `BENCHMARKS.md`.

use crate::util::{cargo, has_flag, on_path, repo_root, run as run_command, step, succeeds};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// The browser every measurement uses (Debian's `chromium`).
const CHROMIUM: &str = "/usr/bin/chromium";

/// Entry point of `cargo xtask bench`; the arguments go on to `bench/run.mjs`.
pub fn run(args: &[String]) -> Result<()> {
    let root = repo_root();
    for program in ["node", "npm", "python3", CHROMIUM, "/usr/bin/time"] {
        if !on_path(program) {
            bail!("`cargo xtask bench` needs {program} (see the README's set-up)");
        }
    }

    step("bench: npm ci (baselines and driver, bench/package-lock.json)");
    run_command(Command::new("npm").args(["ci", "--prefix", "bench", "--no-audit", "--no-fund"]))?;

    step("bench: python3 with pandas + pyarrow");
    if !succeeds(Command::new("python3").args(["-c", "import pandas, pyarrow"])) {
        run_command(Command::new("python3").args(["-m", "pip", "install", "--quiet", "pandas", "pyarrow"]))?;
    }

    // pandas 2.2 in a venv of its own, timed beside the installed pandas for context (pandas 3
    // ran the recipe on the seed-scale CSV 2.7 times faster). Without it (no venv module, no
    // network) the bench goes on and says so.
    step("bench: pandas 2.2 in a venv (target/bench-pandas2), for context");
    let venv = root.join("target/bench-pandas2");
    let venv_python = venv.join("bin/python");
    let have_pandas2 = venv_python.exists()
        && succeeds(Command::new(&venv_python).args(["-c", "import pandas, pyarrow; assert pandas.__version__.startswith('2.2')"]));
    if !have_pandas2 {
        let made = succeeds(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            && succeeds(Command::new(&venv_python).args(["-m", "pip", "install", "--quiet", "pandas==2.2.3", "pyarrow"]));
        if !made {
            eprintln!("bench: pandas 2.2 could not be installed in {}; its timings are left out", venv.display());
            let _ = std::fs::remove_dir_all(&venv);
        }
    }

    step("bench: data generator (bench/synth, release)");
    run_command(cargo()
        .args(["build", "--release", "--quiet", "--manifest-path", "bench/synth/Cargo.toml"])
        .env("CARGO_TARGET_DIR", root.join("target/bench-synth")))?;

    step("bench: our page (dist/)");
    crate::prereq::ensure(crate::prereq::Needs::Build)?;
    crate::dist::dist().context("`cargo xtask dist` failed: our page cannot be measured")?;

    if !has_flag(args, "--no-cli") {
        step("bench: the CLI (release)");
        run_command(cargo().args(["build", "--release", "--bin", "mask-impact"]))?;
    }

    step("bench: node bench/run.mjs");
    run_command(Command::new("node").arg("bench/run.mjs").args(args))
}
