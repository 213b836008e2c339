//! `cargo xtask`: the project's build, serve, test and packaging tasks (the cargo-xtask pattern).
//!
//! One module per subcommand; to add one, write `src/<name>.rs` with a
//! `pub fn run(args: &[String]) -> anyhow::Result<()>` and add one line to [`SUBCOMMANDS`]
//! (plus the `mod` line).

mod bench;
mod build;
mod dist;
mod fuzz;
mod prereq;
mod serve;
mod test;
mod util;

use anyhow::{bail, Result};

/// A subcommand: name, one-line help, entry point (gets the arguments after the name).
type Subcommand = (&'static str, &'static str, fn(&[String]) -> Result<()>);

/// Every subcommand of `cargo xtask`, in the order `--help` lists them.
const SUBCOMMANDS: &[Subcommand] = &[
    ("prereq", "check (and, as root on Debian, install) what the build and the tests need [--test]", prereq::run),
    ("dist", "build the wasm and write dist/ (static site + single-file mask-impact-viewer.html) [--wasm-opt]", dist::run),
    ("serve", "dist, then serve dist/ on http://127.0.0.1:8000/ [--port N] [--no-build]", serve::run),
    ("bench", "benchmark our page against parquet-wasm + Arrow.js, hyparquet (headless Chromium); rewrites BENCHMARKS.md [--quick]", bench::run),
    ("fuzz", "run the ingest fuzz targets for a bounded time each [--seconds N] [--target NAME]", fuzz::run),
    ("test", "run every test: cargo test -p mask-impact and -p xtask, dist, end-to-end tests in headless Chromium [--no-unit] [--wasm-opt] [-- FILTER]", test::run),
];

fn usage() -> String {
    let mut text = String::from("usage: cargo xtask <subcommand> [options]\n\nsubcommands:\n");
    for (name, help, _) in SUBCOMMANDS {
        text.push_str(&format!("  {name:<8} {help}\n"));
    }
    text
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprint!("{}", usage());
        std::process::exit(2);
    };
    if name == "help" || name == "--help" || name == "-h" {
        print!("{}", usage());
        return Ok(());
    }
    match SUBCOMMANDS.iter().find(|(n, _, _)| n == name) {
        Some((_, _, run)) => run(&args[1..]),
        None => bail!("unknown subcommand `{name}`\n\n{}", usage()),
    }
}
