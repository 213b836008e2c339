//! `cargo xtask test [--no-unit] [--wasm-opt] [-- E2E_TEST_FILTER…]`: runs every test, in this order:
//! prerequisites; the Python fixture script (`tests/fixtures/make_fixtures.py`, when present);
//! `cargo test -p mask-impact`, `cargo test -p xtask`; `dist`; a static server on a free port
//! and `chromedriver`; the end-to-end tests (`cargo test --test e2e`, told where everything is through environment
//! variables, see `tests/e2e/harness.rs`); then stops the servers. Exits non-zero on any failure.

use crate::prereq::{self, Needs};
use crate::serve::{Mount, Server};
use crate::util::{self, has_flag, on_path, repo_root, step};
use anyhow::{bail, Context, Result};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Environment variables read by the end-to-end tests (keep in sync with `tests/e2e/harness.rs`).
pub mod env {
    /// Base URL of the static server (`http://127.0.0.1:PORT/`), serving `dist/` at `/`.
    pub const HTTP_BASE: &str = "MASK_IMPACT_E2E_HTTP";
    /// `file://` URL of the repository's `index.html`.
    pub const FILE_INDEX: &str = "MASK_IMPACT_E2E_FILE_INDEX";
    /// `file://` URL of `dist/mask-impact-viewer.html` (the single-file build).
    pub const FILE_SINGLE: &str = "MASK_IMPACT_E2E_FILE_SINGLE";
    /// WebDriver (chromedriver) URL.
    pub const WEBDRIVER: &str = "MASK_IMPACT_E2E_WEBDRIVER";
    /// Directory where tests may write data files; served at `/e2e-data/`.
    pub const DATA_DIR: &str = "MASK_IMPACT_E2E_DATA_DIR";
}

/// Where chromedriver lives on Debian.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Entry point of `cargo xtask test`.
pub fn run(args: &[String]) -> Result<()> {
    let (own_args, e2e_filters) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    prereq::ensure(Needs::Test)?;
    let root = repo_root();
    let mut failures: Vec<String> = Vec::new();

    let fixture_script = root.join("tests/fixtures/make_fixtures.py");
    if fixture_script.exists() {
        step("generating test fixtures (tests/fixtures/make_fixtures.py)");
        if let Err(err) = make_fixtures(&fixture_script) {
            eprintln!("FAILED: {err:#}");
            failures.push("tests/fixtures/make_fixtures.py".into());
        }
    }

    if has_flag(own_args, "--no-unit") {
        eprintln!("skipping the unit and integration tests (--no-unit)");
    } else {
        // Package by package, not `--workspace`: features are unified over the packages a
        // command builds, so the `cargo test --test e2e` below reuses the build of
        // `-p mask-impact` (after `--workspace` it rebuilt every dependency: 7 minutes of a
        // cold CI run).
        for package in ["mask-impact", "xtask"] {
            step(&format!("unit and integration tests: cargo test -p {package}"));
            if let Err(err) = util::run(util::cargo().args(["test", "-p", package])) {
                eprintln!("FAILED: {err:#}");
                failures.push(format!("cargo test -p {package}"));
            }
        }
    }

    step("building dist/ for the end-to-end tests");
    // The tests use the wasm `cargo xtask dist` ships: without wasm-opt unless asked
    // (`--wasm-opt`, see xtask/src/build.rs for why it is off).
    match crate::dist::dist_with(has_flag(own_args, "--wasm-opt")) {
        Ok(dist) => {
            if let Err(err) = end_to_end(&dist, e2e_filters) {
                eprintln!("FAILED: {err:#}");
                failures.push("end-to-end tests (cargo test --test e2e)".into());
            }
        }
        Err(err) => {
            eprintln!("FAILED: {err:#}");
            failures.push("cargo xtask dist (so no end-to-end tests ran)".into());
        }
    }

    step("summary");
    if failures.is_empty() {
        eprintln!("all tests passed");
        Ok(())
    } else {
        bail!("failed: {}", failures.join("; "))
    }
}

/// Installs the Python modules the fixture script needs (when missing) and runs it.
fn make_fixtures(script: &Path) -> Result<()> {
    let python = if on_path("python3") { "python3" } else { "python" };
    let requirements = script.with_file_name("requirements.txt");
    if requirements.exists() {
        util::run(Command::new(python).args(["-m", "pip", "install", "--quiet", "-r"]).arg(&requirements))?;
    } else if !util::succeeds(Command::new(python).args(["-c", "import pyarrow, pandas"])) {
        eprintln!("installing the Python modules pyarrow and pandas for the fixture script");
        util::run(Command::new(python).args(["-m", "pip", "install", "--quiet", "pyarrow", "pandas"]))?;
    }
    util::run(Command::new(python).arg(script))
}

/// Starts the static server and chromedriver, runs `cargo test --test e2e`, stops them.
fn end_to_end(dist: &Path, filters: &[String]) -> Result<()> {
    let root = repo_root();
    let data_dir = root.join("target/e2e-data");
    std::fs::create_dir_all(&data_dir)?;
    let server = Server::start(
        0,
        vec![
            Mount::new("/", dist.to_path_buf()),
            // The same site under a sub-path, as on GitHub Pages.
            Mount::new("/sub/path/", dist.to_path_buf()),
            Mount::new("/e2e-data/", data_dir.clone()),
        ],
    )?;
    step(&format!("static server on {}", server.url()));
    let driver = ChromeDriver::start()?;
    step(&format!("chromedriver on {}", driver.url()));

    step("end-to-end tests: cargo test --test e2e");
    let file_url = |path: &Path| format!("file://{}", path.display());
    let mut command = util::cargo();
    command
        .args(["test", "--test", "e2e", "--", "--test-threads=1", "--nocapture"])
        .args(filters)
        .env(env::HTTP_BASE, server.url())
        .env(env::FILE_INDEX, file_url(&root.join("index.html")))
        .env(env::FILE_SINGLE, file_url(&dist.join(crate::dist::SINGLE_FILE_NAME)))
        .env(env::WEBDRIVER, driver.url())
        .env(env::DATA_DIR, &data_dir);
    let result = util::run(&mut command);
    step("stopping chromedriver and the static server");
    drop(driver);
    result
}

/// A running chromedriver, killed on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> Result<ChromeDriver> {
        let port = free_port()?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .spawn()
            .with_context(|| format!("cannot start {CHROMEDRIVER}"))?;
        let driver = ChromeDriver { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not start listening on port {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(driver)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
