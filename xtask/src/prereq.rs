//! `cargo xtask prereq [--test]`: checks what the build (and the tests) need, installing what is
//! missing when that can be done safely: the `wasm32-unknown-unknown` target through rustup, Debian
//! packages through `apt-get` when running as root on Debian. Otherwise it prints the exact
//! command to run and stops.

use crate::util::{self, has_flag, on_path, step};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// The rustc target the viewer is built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// What a subcommand needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// `dist` and `serve`: the wasm target and clang (zstd-sys compiles C for wasm32).
    Build,
    /// `test`: also Chromium and chromedriver; binaryen's `wasm-opt` when it can be installed.
    Test,
}

/// Entry point of `cargo xtask prereq`.
pub fn run(args: &[String]) -> Result<()> {
    ensure(if has_flag(args, "--test") { Needs::Test } else { Needs::Build })
}

/// A Debian package that provides `program`.
struct Package {
    program: &'static str,
    package: &'static str,
    why: &'static str,
    required: bool,
}

/// Checks (and installs, when possible) everything `needs` asks for.
pub fn ensure(needs: Needs) -> Result<()> {
    step("checking prerequisites");
    ensure_wasm_target()?;
    let mut packages = vec![
        Package { program: "clang", package: "clang", why: "zstd-sys compiles C code for wasm32", required: true },
        Package {
            program: "llvm-ar",
            package: "llvm",
            why: "archives zstd-sys's wasm32 objects with a symbol index",
            required: true,
        },
    ];
    if needs == Needs::Test {
        packages.extend([
            Package { program: "chromium", package: "chromium", why: "end-to-end tests", required: true },
            Package {
                program: "chromedriver",
                package: "chromium-driver",
                why: "end-to-end tests drive Chromium through WebDriver",
                required: true,
            },
            Package {
                program: "wasm-opt",
                package: "binaryen",
                why: "wasm-opt -Oz shrinks the wasm (optional)",
                required: false,
            },
        ]);
    }
    let missing: Vec<&Package> = packages.iter().filter(|p| !present(p.program)).collect();
    for package in &packages {
        if present(package.program) {
            eprintln!("ok: {} ({})", package.program, package.why);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.package).collect();
    let command = format!("apt-get update && apt-get install -y {}", names.join(" "));
    if can_apt_install() {
        for package in &missing {
            eprintln!("installing Debian package `{}` ({})", package.package, package.why);
        }
        util::run(Command::new("apt-get").arg("update"))?;
        util::run(Command::new("apt-get").args(["install", "-y", "--no-install-recommends"]).args(&names))
            .context("installing the missing packages")?;
        return Ok(());
    }
    let required: Vec<&&Package> = missing.iter().filter(|p| p.required).collect();
    for package in &missing {
        eprintln!("missing: `{}` from Debian package `{}` ({})", package.program, package.package, package.why);
    }
    if required.is_empty() {
        eprintln!("continuing without them; to install: sudo sh -c '{command}'");
        return Ok(());
    }
    bail!("missing prerequisites; install them with:\n    sudo sh -c '{command}'")
}

/// Whether `program` is installed (`llvm-ar` also as Debian's versioned `llvm-ar-NN`).
fn present(program: &str) -> bool {
    if program == "llvm-ar" {
        return crate::build::find_llvm_ar().is_some();
    }
    on_path(program)
}

/// Whether we may install packages ourselves: root on a Debian-like system with apt-get.
fn can_apt_install() -> bool {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false);
    is_root && Path::new("/etc/debian_version").exists() && on_path("apt-get")
}

/// Makes sure the standard library for [`WASM_TARGET`] is installed (via rustup if not).
fn ensure_wasm_target() -> Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc")?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot).join("lib/rustlib").join(WASM_TARGET).is_dir() {
        eprintln!("ok: rust target {WASM_TARGET}");
        return Ok(());
    }
    if !on_path("rustup") {
        bail!("the Rust target {WASM_TARGET} is missing and rustup is not installed; install the target's standard library for {sysroot}");
    }
    eprintln!("installing the Rust target {WASM_TARGET}");
    util::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}
