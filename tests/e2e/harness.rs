//! End-to-end harness: a WebDriver session on headless Chromium (fantoccini, chromedriver) and
//! helpers that drive a viewer page through the page contract (`../shared/CONTRACT.md`):
//! `#status[data-state]`, `window.maskImpact.*`, the file input, `role="tooltip"`.
//!
//! `cargo xtask test` starts a static server and chromedriver and passes their URLs in the
//! environment variables below; without them (plain `cargo test`) every test prints that it is
//! skipped and returns.

#![allow(dead_code)] // each test binary uses a different subset

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::actions::{InputSource, KeyAction, KeyActions, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Base URL of the static server serving `dist/` at `/` (and again under `/sub/path/`).
pub const ENV_HTTP_BASE: &str = "MASK_IMPACT_E2E_HTTP";
/// `file://` URL of the repository's `index.html`.
pub const ENV_FILE_INDEX: &str = "MASK_IMPACT_E2E_FILE_INDEX";
/// `file://` URL of `dist/mask-impact-viewer.html`.
pub const ENV_FILE_SINGLE: &str = "MASK_IMPACT_E2E_FILE_SINGLE";
/// chromedriver's URL.
pub const ENV_WEBDRIVER: &str = "MASK_IMPACT_E2E_WEBDRIVER";
/// A directory the tests may write data files into; served at `/e2e-data/`.
pub const ENV_DATA_DIR: &str = "MASK_IMPACT_E2E_DATA_DIR";

/// How long a page may take to become ready (cold wasm compile in a busy CI machine included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The real result file (read from `../shared`, never copied).
pub fn real_fixture() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real/image_question_hair.parquet");
    path.exists().then(|| path.canonicalize().unwrap_or(path))
}

/// Where everything is, from `cargo xtask test`.
#[derive(Clone, Debug)]
pub struct Env {
    pub http_base: String,
    pub file_index: String,
    pub file_single: String,
    pub webdriver: String,
    pub data_dir: PathBuf,
}

impl Env {
    /// The environment, or `None` after printing why `test` is skipped.
    pub fn or_skip(test: &str) -> Option<Env> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var(ENV_HTTP_BASE), var(ENV_FILE_INDEX), var(ENV_FILE_SINGLE), var(ENV_WEBDRIVER), var(ENV_DATA_DIR)) {
            (Some(http_base), Some(file_index), Some(file_single), Some(webdriver), Some(data_dir)) => Some(Env {
                http_base,
                file_index,
                file_single,
                webdriver,
                data_dir: PathBuf::from(data_dir),
            }),
            _ => {
                println!("skipped {test}: end-to-end tests need a browser and a server; run `cargo xtask test`");
                None
            }
        }
    }

    /// `http_base` joined with a relative path (`index.html?demo`).
    pub fn http(&self, path: &str) -> String {
        format!("{}{}", self.http_base.trim_end_matches('/').to_owned() + "/", path)
    }
}

/// Runs one end-to-end test: skips without the environment, otherwise opens a browser, runs
/// `body`, closes the browser (also on failure) and panics with the error.
pub fn run<F>(test: &str, body: F)
where
    F: for<'a> FnOnce(&'a Browser, &'a Env) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + 'a>>,
{
    let Some(env) = Env::or_skip(test) else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let started = Instant::now();
    let result = runtime.block_on(async {
        let browser = Browser::open(&env).await?;
        let result = body(&browser, &env).await;
        if result.is_err() {
            if let Ok(diag) = browser.diagnostics().await {
                eprintln!("{test}: page at failure: {diag}");
            }
        }
        browser.close().await;
        result
    });
    // For the report only (never asserted).
    eprintln!("{test}: {:.1} s", started.elapsed().as_secs_f64());
    if let Err(err) = result {
        panic!("{test}: {err:#}");
    }
}

/// A DevTools protocol command, sent through chromedriver (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"cmd": self.cmd, "params": self.params}).to_string()))
    }
}

/// A headless Chromium session.
pub struct Browser {
    pub client: Client,
    profile_dir: PathBuf,
}

/// The `#status` element's state and text.
#[derive(Clone, Debug)]
pub struct Status {
    pub state: String,
    pub text: String,
}

impl Browser {
    /// Starts Chromium (headless, fresh profile) through chromedriver, window 1600 × 1000.
    pub async fn open(env: &Env) -> Result<Browser> {
        let profile_dir = std::env::temp_dir().join(format!(
            "mask-impact-e2e-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        std::fs::create_dir_all(&profile_dir)?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--window-size=1600,1000",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile_dir.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&env.webdriver)
            .await
            .with_context(|| format!("starting Chromium through chromedriver at {}", env.webdriver))?;
        Ok(Browser { client, profile_dir })
    }

    /// Ends the session and removes the profile.
    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile_dir);
    }

    /// Navigates to `url`.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client.goto(url).await.with_context(|| format!("opening {url}"))
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.client.execute(script, args).await.map_err(|e| anyhow!("script failed: {e}\n{script}"))
    }

    /// The `#status` element now.
    pub async fn status(&self) -> Result<Status> {
        let v = self
            .js(
                "const s = document.getElementById('status'); \
                 return s ? [s.getAttribute('data-state') || '', s.textContent || ''] : null;",
                vec![],
            )
            .await?;
        match v {
            Value::Array(a) if a.len() == 2 => Ok(Status {
                state: a[0].as_str().unwrap_or_default().to_owned(),
                text: a[1].as_str().unwrap_or_default().to_owned(),
            }),
            _ => Ok(Status { state: "(no #status element)".into(), text: String::new() }),
        }
    }

    /// Waits until `#status[data-state]` is one of `states`; errors after `timeout`.
    pub async fn wait_status(&self, states: &[&str], timeout: Duration) -> Result<Status> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status().await?;
            if states.contains(&status.state.as_str()) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "#status stayed {:?} ({:?}) for {:?}; wanted {:?}",
                    status.state,
                    status.text,
                    timeout,
                    states
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for `ready` (or fails, also on `error`, with the status text).
    pub async fn wait_ready(&self) -> Result<()> {
        let status = self.wait_status(&["ready", "error"], READY_TIMEOUT).await?;
        if status.state != "ready" {
            bail!("page reported an error: {}", status.text);
        }
        Ok(())
    }

    /// Waits until `window.maskImpact` exists (the page has started).
    pub async fn wait_api(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = self.js("return typeof window.maskImpact === 'object' && window.maskImpact !== null;", vec![]).await?;
            if ready == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let status = self.status().await?;
                bail!("window.maskImpact did not appear (status {:?}: {:?})", status.state, status.text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Calls `window.maskImpact[method](...args)`; awaits it when it returns a promise. A
    /// rejection becomes an `Err` with the rejection text.
    pub async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value> {
        let script = "const [method, args, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];\
             Promise.resolve().then(() => window.maskImpact[method](...args))\
               .then(v => done({ok: v === undefined ? null : v}), e => done({err: String(e && e.message || e)}));";
        let out = self
            .client
            .execute_async(script, vec![json!(method), Value::Array(args)])
            .await
            .map_err(|e| anyhow!("maskImpact.{method}: {e}"))?;
        if let Some(err) = out.get("err") {
            bail!("maskImpact.{method} rejected: {}", err.as_str().unwrap_or_default());
        }
        Ok(out.get("ok").cloned().unwrap_or(Value::Null))
    }

    /// `maskImpact.state()`.
    pub async fn state(&self) -> Result<serde_json::Map<String, Value>> {
        match self.call("state", vec![]).await? {
            Value::Object(map) => Ok(map),
            other => bail!("maskImpact.state() returned {other}"),
        }
    }

    /// `maskImpact.locate({layer, position, variant})` → client `(x, y)`, or `None`.
    pub async fn locate(&self, layer: i64, position: i64, variant: &str) -> Result<Option<(f64, f64)>> {
        let v = self.call("locate", vec![json!({"layer": layer, "position": position, "variant": variant})]).await?;
        if v.is_null() {
            return Ok(None);
        }
        let x = v.get("x").and_then(Value::as_f64).context("locate: no x")?;
        let y = v.get("y").and_then(Value::as_f64).context("locate: no y")?;
        Ok(Some((x, y)))
    }

    /// `maskImpact.probe(x, y)`.
    pub async fn probe(&self, x: f64, y: f64) -> Result<Value> {
        self.call("probe", vec![json!(x), json!(y)]).await
    }

    /// Sets `location.hash` (without `#`) and waits a moment for the page to follow.
    pub async fn set_hash(&self, hash: &str) -> Result<()> {
        self.js("location.hash = arguments[0];", vec![json!(hash)]).await?;
        self.settle().await
    }

    /// `location.hash` without `#`, decoded into key → value.
    pub async fn hash(&self) -> Result<Vec<(String, String)>> {
        let v = self
            .js(
                "return location.hash.replace(/^#/, '').split('&').filter(Boolean)\
                   .map(kv => { const i = kv.indexOf('='); return i < 0 ? [decodeURIComponent(kv), ''] : \
                   [decodeURIComponent(kv.slice(0, i)), decodeURIComponent(kv.slice(i + 1))]; });",
                vec![],
            )
            .await?;
        Ok(v.as_array()
            .map(|pairs| {
                pairs
                    .iter()
                    .filter_map(|p| Some((p.get(0)?.as_str()?.to_owned(), p.get(1)?.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits two animation frames (the page repaints on the next frame after a change).
    pub async fn settle(&self) -> Result<()> {
        let script = "const done = arguments[arguments.length - 1];\
            requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(() => done(null), 50)));";
        self.client.execute_async(script, vec![]).await.map_err(|e| anyhow!("settle: {e}"))?;
        Ok(())
    }

    /// Gives `path` to the page's `input[type=file]` (as a user picking the file would).
    pub async fn upload(&self, path: &Path) -> Result<()> {
        let input = self
            .client
            .find(Locator::Css("input[type=file]"))
            .await
            .context("the page has no input[type=file]")?;
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        input.send_keys(&path.to_string_lossy()).await.map_err(|e| anyhow!("send_keys({}): {e}", path.display()))
    }

    /// Drops `paths` (files or folders) on the page at client point `(x, y)`, as a user
    /// dragging them from a file manager would: through the DevTools protocol
    /// (`Input.dispatchDragEvent`, by chromedriver's `goog/cdp/execute`), so that the page gets
    /// real file-system entries (a folder's `webkitGetAsEntry()` is a directory).
    pub async fn drop_paths(&self, paths: &[&Path], x: f64, y: f64) -> Result<()> {
        let files: Vec<String> = paths
            .iter()
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).to_string_lossy().into_owned())
            .collect();
        for kind in ["dragEnter", "dragOver", "drop"] {
            let params = json!({
                "type": kind, "x": x, "y": y,
                "data": {"items": [], "files": files, "dragOperationsMask": 1},
            });
            self.client
                .issue_cmd(Cdp { cmd: "Input.dispatchDragEvent", params })
                .await
                .map_err(|e| anyhow!("Input.dispatchDragEvent {kind} of {files:?}: {e}"))?;
        }
        Ok(())
    }

    /// Picks the folder `path` with the page's **Open folder…** button, as a user choosing it
    /// in the browser's folder dialog would. The button clicks a folder input (`webkitdirectory`)
    /// that is not in the page; its `click` is caught here (no dialog opens), and the folder is
    /// given to that input through the DevTools protocol (`DOM.setFileInputFiles`), so that the
    /// page gets its files with their paths (`webkitRelativePath`).
    pub async fn pick_folder(&self, path: &Path) -> Result<()> {
        self.js(
            "window.__miPicked = null; \
             const click = HTMLInputElement.prototype.click; \
             HTMLInputElement.prototype.click = function () { \
               if (this.webkitdirectory) { window.__miPicked = this; } else { click.call(this); } \
             };",
            vec![],
        )
        .await?;
        let button = self
            .client
            .find(Locator::XPath("//button[starts-with(normalize-space(.), 'Open folder')]"))
            .await
            .context("no Open folder… button")?;
        button.click().await.map_err(|e| anyhow!("clicking Open folder…: {e}"))?;
        let picked = self
            .client
            .issue_cmd(Cdp { cmd: "Runtime.evaluate", params: json!({"expression": "window.__miPicked"}) })
            .await
            .map_err(|e| anyhow!("Runtime.evaluate: {e}"))?;
        let object = picked
            .pointer("/result/objectId")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("Open folder… clicked no folder input: {picked}"))?
            .to_string();
        let folder = path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).to_string_lossy().into_owned();
        self.client
            .issue_cmd(Cdp { cmd: "DOM.setFileInputFiles", params: json!({"files": [folder], "objectId": object}) })
            .await
            .map_err(|e| anyhow!("DOM.setFileInputFiles {folder}: {e}"))?;
        Ok(())
    }

    /// Chooses `value` in `select[name=key]` (the control of hash key `key`).
    pub async fn choose(&self, key: &str, value: &str) -> Result<()> {
        let select = self
            .client
            .find(Locator::Css(&format!("select[name={key}]")))
            .await
            .with_context(|| format!("no <select name={key}>"))?;
        select.select_by_value(value).await.map_err(|e| anyhow!("choosing {value:?} in select[name={key}]: {e}"))?;
        self.settle().await
    }

    /// Moves the mouse to client point `(x, y)`.
    pub async fn hover(&self, x: f64, y: f64) -> Result<()> {
        let mouse = MouseActions::new("mouse".into()).then(PointerAction::MoveTo {
            duration: Some(Duration::from_millis(0)),
            x: x.round(),
            y: y.round(),
        });
        self.client.perform_actions(mouse).await.map_err(|e| anyhow!("moving the mouse to ({x}, {y}): {e}"))?;
        self.settle().await
    }

    /// Clicks (left button, without moving in between) at client point `(x, y)`.
    pub async fn click_at(&self, x: f64, y: f64) -> Result<()> {
        let mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveTo { duration: Some(Duration::from_millis(0)), x: x.round(), y: y.round() })
            .then(PointerAction::Down { button: fantoccini::actions::MOUSE_BUTTON_LEFT })
            .then(PointerAction::Up { button: fantoccini::actions::MOUSE_BUTTON_LEFT });
        self.client.perform_actions(mouse).await.map_err(|e| anyhow!("clicking at ({x}, {y}): {e}"))?;
        self.settle().await
    }

    /// The text of the visible `[role=tooltip]`, if any.
    pub async fn tooltip(&self) -> Result<Option<String>> {
        let v = self
            .js(
                "const t = [...document.querySelectorAll('[role=tooltip]')]\
                   .find(e => !e.hidden && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden');\
                 return t ? t.textContent : null;",
                vec![],
            )
            .await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// The RGBA of the canvas pixel shown at client point `(x, y)`: the topmost canvas there
    /// whose pixel is not fully transparent (overlays for hover marks are skipped).
    pub async fn pixel(&self, x: f64, y: f64) -> Result<[u8; 4]> {
        let v = self
            .js(
                "const [x, y] = arguments;\
                 for (const el of document.elementsFromPoint(x, y)) {\
                   if (!(el instanceof HTMLCanvasElement)) continue;\
                   const r = el.getBoundingClientRect();\
                   const px = Math.floor((x - r.left) * el.width / r.width);\
                   const py = Math.floor((y - r.top) * el.height / r.height);\
                   const ctx = el.getContext('2d');\
                   if (!ctx) continue;\
                   const d = ctx.getImageData(px, py, 1, 1).data;\
                   if (d[3] > 0) return Array.from(d);\
                 }\
                 return null;",
                vec![json!(x), json!(y)],
            )
            .await?;
        let a = v.as_array().with_context(|| format!("no painted 2D canvas at ({x}, {y})"))?;
        let mut rgba = [0u8; 4];
        for (out, value) in rgba.iter_mut().zip(a) {
            *out = value.as_u64().unwrap_or(0) as u8;
        }
        Ok(rgba)
    }

    /// Presses and releases `key` (a character, or a `fantoccini::key::Key` as `char`) with
    /// the WebDriver actions API: the events go to the focused element, as from a keyboard.
    pub async fn press(&self, key: char) -> Result<()> {
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(keys).await.map_err(|e| anyhow!("pressing {key:?}: {e}"))?;
        self.settle().await
    }

    /// Takes the focus away from any control (keys then go to the page itself).
    pub async fn blur(&self) -> Result<()> {
        self.js("if (document.activeElement && document.activeElement.blur) document.activeElement.blur();", vec![])
            .await?;
        Ok(())
    }

    /// Whether a JavaScript dialog (alert/confirm) is open.
    pub async fn alert_open(&self) -> bool {
        self.client.get_alert_text().await.is_ok()
    }

    /// Status, URL and the start of the body text, for failure messages.
    pub async fn diagnostics(&self) -> Result<String> {
        let v = self
            .js(
                "const s = document.getElementById('status');\
                 return location.href + ' | status ' + (s ? s.getAttribute('data-state') + ': ' + s.textContent : 'missing');",
                vec![],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }
}

/// Runs `python3 tests/e2e/sample_cells.py …` and returns its JSON (the independent values).
pub fn sample_cells(parquet: &Path, step: i64, variant: &str, metric: &str, count: usize) -> Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/sample_cells.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(parquet)
        .args(["--step", &step.to_string(), "--variant", variant, "--metric", metric, "--count", &count.to_string()])
        .output()
        .context("running python3 (with pyarrow) for the expected values")?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("parsing sample_cells.py output")
}

/// The original viewer's colour for `value` in a row whose maximum (position 0 excluded) is
/// `row_max`: linear scale, `t = clamp(value / row_max, 0, 1)`, 21 levels `k = round(20 t)`,
/// colour `rgb(255, g, g)` with `g = round(255 (20 − k) / 20)` (CONTRACT/README colour map).
/// Returns the colours allowed: two when `20 t` lies within 1e-3 of a rounding boundary.
pub fn expected_reds(value: f64, row_max: f64) -> Vec<[u8; 4]> {
    let t = if row_max > 0.0 { (value / row_max).clamp(0.0, 1.0) } else { 0.0 };
    let x = t * 20.0;
    let colour = |k: f64| {
        let g = (255.0 * (20.0 - k) / 20.0).round() as u8;
        [255, g, g, 255]
    };
    let mut allowed = vec![colour(x.round())];
    if (x - x.floor() - 0.5).abs() < 1e-3 {
        allowed.push(colour(x.floor()));
        allowed.push(colour(x.ceil()));
    }
    allowed
}

/// Colour of level `k` (`0..=20`) of the documented white → red map (README, CONTRACT):
/// `rgb(255, g, g)` with `g = round(255 (20 − k) / 20)`.
pub fn reds_colour(level: u64) -> [u8; 4] {
    let k = level.min(20) as f64;
    let g = (255.0 * (20.0 - k) / 20.0).round() as u8;
    [255, g, g, 255]
}

/// Whether `rgba` is one of the 21 colours of the white → red map: a cell without data must not
/// be (a null or NaN shown as 0 would be white, level 0).
pub fn is_reds_colour(rgba: [u8; 4]) -> bool {
    (0..=20).any(|k| reds_colour(k) == rgba)
}

/// The folder `tests/fixtures/make_fixtures.py` writes (`cargo xtask test` runs it first).
pub fn generated_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generated")
}

/// `tests/fixtures/generated/manifest.json`: the writer-variant and bad-input files and the
/// values pyarrow/pandas read from them.
pub fn fixtures_manifest() -> Result<Value> {
    let path = generated_fixtures().join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run python3 tests/fixtures/make_fixtures.py)", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs `python3 tests/e2e/views_fixture.py OUT`: writes the view tests' data file to `out` and
/// returns the expectations it prints (computed with pyarrow from the file as written).
pub fn views_fixture(out: &Path) -> Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/views_fixture.py");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let run = std::process::Command::new("python3")
        .arg(&script)
        .arg(out)
        .output()
        .context("running python3 (with pyarrow and numpy) for the view fixture")?;
    if !run.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&run.stderr));
    }
    serde_json::from_slice(&run.stdout).context("parsing views_fixture.py output")
}

/// Writes `name` into the data dir (served at `/e2e-data/`) and returns its path.
pub fn write_data(env: &Env, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(&env.data_dir)?;
    let path = env.data_dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A small CSV in the results format: 2 steps × 3 layers × 5 positions × variants `Full`,
/// `Attn`; `l2_distance = step + layer/10 + position/100 (+0.5 for Attn)`,
/// `cosine_distance = l2/100`; position 2's token is `token_at_2`.
pub fn small_csv(token_at_2: &str) -> String {
    let mut csv = String::from("generation_step,layer,token_masked,token_position,variant,l2_distance,cosine_distance\n");
    let tokens = ["<|im_start|>", "Hello", token_at_2, ",", " world"];
    for step in 0..2 {
        for layer in 0..3 {
            for (position, token) in tokens.iter().enumerate() {
                for (variant, extra) in [("Full", 0.0), ("Attn", 0.5)] {
                    let l2 = step as f64 + layer as f64 / 10.0 + position as f64 / 100.0 + extra;
                    let quoted = format!("\"{}\"", token.replace('"', "\"\""));
                    csv.push_str(&format!("{step},{layer},{quoted},{position},{variant},{l2:.4},{:.6}\n", l2 / 100.0));
                }
            }
        }
    }
    csv
}

/// `l2_distance` of a [`small_csv`] cell, computed by hand from its formula.
pub fn small_csv_l2(step: i64, layer: i64, position: i64, variant: &str) -> f64 {
    let extra = if variant == "Attn" { 0.5 } else { 0.0 };
    let v = step as f64 + layer as f64 / 10.0 + position as f64 / 100.0 + extra;
    (v * 10000.0).round() / 10000.0
}

/// The value of `key` in a state object as text (numbers and strings alike).
pub fn state_text(state: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match state.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}
