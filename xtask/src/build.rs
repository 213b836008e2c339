//! Building the viewer's WebAssembly, two modules (the page's and the decode worker's, see
//! [`Role`]): `cargo build --lib --release --target wasm32-unknown-unknown --no-default-features
//! --features web-page|web-worker` (in its own target dir, `target/wasm`), wasm-bindgen (`--target no-modules`, used as a
//! library, pinned to the root crate's `wasm-bindgen` version) and `wasm-opt -Oz` when binaryen
//! is installed.

use crate::prereq::WASM_TARGET;
use crate::util::{self, on_path, repo_root, step};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The two modules built from the root crate (cargo features select each one's entry point; see
/// `[features]` in Cargo.toml): the page's (view, render, DOM) and the decode worker's (ingest,
/// codecs, cube builder, demo data). The page is ready once its own small module runs; the
/// worker's compiles meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `start_page`: feature `web-page`.
    Page,
    /// `worker_main`: feature `web-worker`.
    Worker,
}

impl Role {
    /// Both roles, page first.
    pub const ALL: [Role; 2] = [Role::Page, Role::Worker];

    /// The cargo feature exporting this role's entry point.
    fn feature(self) -> &'static str {
        match self {
            Role::Page => "web-page",
            Role::Worker => "web-worker",
        }
    }

    /// Name of the wasm file next to the loader in `dist/` (the loader fetches it by this name).
    pub fn wasm_file_name(self) -> &'static str {
        match self {
            Role::Page => "mask_impact_page.wasm",
            Role::Worker => "mask_impact_worker.wasm",
        }
    }
}

/// One built module: its wasm-bindgen glue and the (optimised) wasm.
pub struct WasmModule {
    /// The `--target no-modules` glue: a classic script defining the global `wasm_bindgen`.
    pub glue_js: String,
    /// The final wasm bytes.
    pub wasm: Vec<u8>,
}

/// The built viewer: the page's module and the decode worker's.
pub struct WasmBuild {
    /// The page's module (`start_page`).
    pub page: WasmModule,
    /// The decode worker's module (`worker_main`).
    pub worker: WasmModule,
}

/// Builds both modules (see [`Role`]), binds them and (when `optimise_size`) runs `wasm-opt
/// -Oz`; prints the sizes.
///
/// `wasm-opt` is off by default: binaryen 108 (Debian 12's) writes a module whose externref
/// table wasm-bindgen's glue can no longer fill (the page stops at "WebAssembly.Table.set():
/// Argument 1 is invalid for table"), and it saves about 12% raw but only 0.2% gzipped
/// (measured on the single module of before the split: 8,768,030 → 7,712,754 bytes; 2,393,202 →
/// 2,388,422 gzipped).
pub fn build_wasm(optimise_size: bool) -> Result<WasmBuild> {
    Ok(WasmBuild { page: build_module(Role::Page, optimise_size)?, worker: build_module(Role::Worker, optimise_size)? })
}

/// Builds, binds and (optionally) optimises the module of `role`.
fn build_module(role: Role, optimise_size: bool) -> Result<WasmModule> {
    let root = repo_root();
    let target_dir = root.join("target/wasm");
    // MASK_IMPACT_PROFILE=quick builds with the `quick` profile (no LTO, incremental): a
    // larger, slightly slower wasm in a fraction of the build time, for iterating on the page.
    let profile = std::env::var("MASK_IMPACT_PROFILE").unwrap_or_else(|_| "release".into());
    step(&format!(
        "building the {role:?} wasm (profile {profile}{}; the first build takes a few minutes)",
        if profile == "release" { ", LTO" } else { "" }
    ));
    let mut cargo = util::cargo();
    cargo
        .args(["build", "--lib", "--profile", &profile, "--target", WASM_TARGET])
        .args(["--no-default-features", "--features", role.feature(), "--target-dir"])
        .arg(&target_dir);
    // 128-bit SIMD (every browser since 2021–2023: Chrome 91, Firefox 89, Safari 16.4): memchr's
    // scans for quotes, delimiters and newlines, which the CSV/JSON decoder lives on, use it.
    if std::env::var_os("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS").is_none() {
        cargo.env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS", "-C target-feature=+simd128");
    }
    if std::env::var_os("AR_wasm32_unknown_unknown").is_none() {
        // cc (for zstd-sys) needs an archiver that writes a symbol index for wasm objects.
        if let Some(llvm_ar) = find_llvm_ar() {
            cargo.env("AR_wasm32_unknown_unknown", llvm_ar);
        }
    }
    util::run(&mut cargo)?;
    // Both roles link to the same path: bind each right after its build.
    let raw_wasm = target_dir.join(WASM_TARGET).join(&profile).join("mask_impact.wasm");

    step(&format!("wasm-bindgen (no-modules) of the {role:?} wasm"));
    let bindgen_dir = target_dir.join("bindgen").join(role.feature());
    std::fs::create_dir_all(&bindgen_dir)?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&raw_wasm)
        .out_name("mask_impact")
        .no_modules(true)?
        .typescript(false)
        .remove_name_section(true)
        .remove_producers_section(true)
        .generate(&bindgen_dir)
        .with_context(|| format!("wasm-bindgen on {}", raw_wasm.display()))?;
    let glue_path = bindgen_dir.join("mask_impact.js");
    let glue_js = std::fs::read_to_string(&glue_path)
        .with_context(|| format!("reading {}", glue_path.display()))?;
    let bound_wasm = bindgen_dir.join("mask_impact_bg.wasm");

    let final_wasm = if optimise_size {
        optimise(&bound_wasm, &bindgen_dir.join("mask_impact_bg.opt.wasm"))
    } else {
        eprintln!("note: wasm-opt not run (pass --wasm-opt to run it; see xtask/src/build.rs)");
        bound_wasm.clone()
    };
    let wasm = std::fs::read(&final_wasm).with_context(|| format!("reading {}", final_wasm.display()))?;
    let raw_bytes = std::fs::metadata(&bound_wasm).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{role:?} wasm: {} bytes ({} gzipped); before wasm-opt {} bytes; glue {} bytes",
        wasm.len(),
        gzip_len(&wasm),
        raw_bytes,
        glue_js.len()
    );
    Ok(WasmModule { glue_js, wasm })
}

/// Runs `wasm-opt -Oz` from `input` to `output` and returns the file to use: `output`, or `input`
/// when binaryen is missing or fails (the viewer works without it, only larger).
fn optimise(input: &Path, output: &Path) -> PathBuf {
    if !on_path("wasm-opt") {
        eprintln!("note: wasm-opt (Debian package binaryen) not found; the wasm is not size-optimised");
        return input.to_path_buf();
    }
    step("wasm-opt -Oz");
    // rustc's default wasm32 features; wasm-opt must accept them to read the module.
    let mut command = Command::new("wasm-opt");
    command
        .arg("-Oz")
        .args([
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-multivalue",
            "--enable-reference-types",
        ])
        .arg(input)
        .arg("-o")
        .arg(output);
    let limit = std::env::var("MASK_IMPACT_WASM_OPT_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(WASM_OPT_TIMEOUT_S);
    match run_with_timeout(&mut command, std::time::Duration::from_secs(limit)) {
        Ok(()) => output.to_path_buf(),
        Err(err) => {
            eprintln!("warning: {err:#}; using the wasm without wasm-opt");
            input.to_path_buf()
        }
    }
}

/// How long `wasm-opt -Oz` may run before we give up on it (override with the environment
/// variable `MASK_IMPACT_WASM_OPT_TIMEOUT_S`): binaryen 108 needs minutes on our ~11 MB module.
const WASM_OPT_TIMEOUT_S: u64 = 900;

/// Runs `command` (echoed), killing it after `limit`.
fn run_with_timeout(command: &mut Command, limit: std::time::Duration) -> Result<()> {
    eprintln!("$ {} (at most {} s)", util::describe(command), limit.as_secs());
    let mut child = command.spawn().with_context(|| format!("cannot start `{}`", util::describe(command)))?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "`{}` failed ({status})", util::describe(command));
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("`{}` took longer than {} s", util::describe(command), limit.as_secs());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The size of `bytes` gzipped at the best level (what a static host would send).
pub fn gzip_len(bytes: &[u8]) -> usize {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    if encoder.write_all(bytes).is_err() {
        return 0;
    }
    encoder.finish().map(|out| out.len()).unwrap_or(0)
}

/// An `llvm-ar` (Debian installs it as `llvm-ar-NN` with clang), if any.
pub fn find_llvm_ar() -> Option<PathBuf> {
    if on_path("llvm-ar") {
        return Some(PathBuf::from("llvm-ar"));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/bin")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("llvm-ar-"))
        })
        .collect();
    candidates.sort();
    candidates.pop()
}
