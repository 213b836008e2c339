//! End-to-end contract tests: the built viewer in headless Chromium, driven only through the page
//! contract (`../shared/CONTRACT.md`). Run them with `cargo xtask test` (which builds `dist/`,
//! starts a static server and chromedriver); under plain `cargo test` each test says it is skipped.
//!
//! Expected values come from independent sources: pyarrow (`tests/e2e/sample_cells.py`,
//! `tests/e2e/real_views.py`) for the real fixture, closed-form formulas for the small generated
//! files (`harness::small_csv`), `tests/e2e/views_fixture.py` (a 16 × 16 image-grid data set and
//! its values, intensities and colour levels) for the views (`e2e/views.rs`, issue #5), and
//! `tests/fixtures/generated/manifest.json` (`tests/fixtures/make_fixtures.py`) for the writer
//! variants and bad inputs (`e2e/files.rs`, issue #4).
//! Controls are found as `select[name=KEY]`, KEY being the hash key they set.

#[path = "e2e/harness.rs"]
mod harness;

use anyhow::{bail, ensure, Context, Result};
use harness::{expected_reds, small_csv, small_csv_l2, state_text, write_data, Browser, Env};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Declares one end-to-end test: `e2e!(name, |browser, env| { … Ok(()) });`.
macro_rules! e2e {
    ($name:ident, |$b:ident, $env:ident| $body:block) => {
        #[test]
        fn $name() {
            harness::run(stringify!($name), |$b: &Browser, $env: &Env| Box::pin(async move $body));
        }
    };
}

// Views (issue #5) and files (issue #4); they use the macro above and the helpers below.
#[path = "e2e/files.rs"]
mod files;
#[path = "e2e/views.rs"]
mod views;

/// The hash keys the contract names, which `state()` must carry.
const CONTRACT_KEYS: &[&str] = &["step", "variant", "metric", "view", "layer"];

async fn open_ready(b: &Browser, url: &str) -> Result<()> {
    b.goto(url).await?;
    b.wait_api().await?;
    b.wait_ready().await
}

async fn check_state_keys(b: &Browser) -> Result<()> {
    let state = b.state().await?;
    for key in CONTRACT_KEYS {
        ensure!(state.contains_key(*key), "state() lacks {key:?}: {state:?}");
    }
    let hash = b.hash().await?;
    for key in ["step", "variant", "metric", "view"] {
        let in_hash = hash.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        ensure!(
            in_hash == state_text(&state, key),
            "hash {key}={in_hash:?} differs from state() {key}={:?}",
            state_text(&state, key)
        );
    }
    Ok(())
}

/// Loads `path` through the file input and waits for `ready`/`error`; returns the status.
async fn upload_and_wait(b: &Browser, path: &std::path::Path) -> Result<harness::Status> {
    // Mark the status so that a stale `ready` is not mistaken for the new one.
    b.js("document.getElementById('status').setAttribute('data-state', 'e2e-pending');", vec![]).await?;
    b.upload(path).await?;
    b.wait_status(&["ready", "error"], harness::READY_TIMEOUT).await
}

async fn upload_ready(b: &Browser, path: &std::path::Path) -> Result<()> {
    let status = upload_and_wait(b, path).await?;
    ensure!(status.state == "ready", "loading {} failed: {}", path.display(), status.text);
    Ok(())
}

/// Sets some hash keys, keeping the others.
async fn update_hash(b: &Browser, changes: &[(&str, &str)]) -> Result<()> {
    let mut pairs = b.hash().await?;
    for (key, value) in changes {
        match pairs.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value.to_string(),
            None => pairs.push((key.to_string(), value.to_string())),
        }
    }
    let hash = b
        .js(
            "return arguments[0].map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(v)).join('&');",
            vec![json!(pairs)],
        )
        .await?;
    b.set_hash(hash.as_str().unwrap_or_default()).await
}

/// `probe(locate(cell))`: the probed object, failing when the cell is not visible.
async fn probe_cell(b: &Browser, layer: i64, position: i64, variant: &str) -> Result<(f64, f64, Value)> {
    let (x, y) = b
        .locate(layer, position, variant)
        .await?
        .with_context(|| format!("locate(layer {layer}, position {position}, {variant}) is null"))?;
    let probe = b.probe(x, y).await?;
    ensure!(!probe.is_null(), "probe({x}, {y}) is null for layer {layer} position {position} {variant}");
    Ok((x, y, probe))
}

fn num(v: &Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

async fn check_small_cell(b: &Browser, step: i64, layer: i64, position: i64, variant: &str) -> Result<()> {
    let (_, _, probe) = probe_cell(b, layer, position, variant).await?;
    let want = small_csv_l2(step, layer, position, variant);
    let got = num(&probe, "value").with_context(|| format!("probe has no value: {probe}"))?;
    ensure!(close(got, want), "step {step} layer {layer} position {position} {variant}: probe value {got}, expected {want}: {probe}");
    ensure!(num(&probe, "step") == Some(step as f64), "probe step: {probe}, expected {step}");
    ensure!(text(&probe, "variant").as_deref() == Some(variant), "probe variant: {probe}, expected {variant}");
    Ok(())
}

e2e!(http_index_demo_is_ready_with_contract_state, |b, env| {
    open_ready(b, &env.http("index.html?demo")).await?;
    check_state_keys(b).await
});

e2e!(http_sub_path_demo_is_ready, |b, env| {
    open_ready(b, &env.http("sub/path/index.html?demo")).await?;
    check_state_keys(b).await
});

e2e!(http_legacy_pages_demo_are_ready, |b, env| {
    for page in ["visualize_results.html", "visualize_results_json.html"] {
        open_ready(b, &env.http(&format!("{page}?demo"))).await.with_context(|| page.to_owned())?;
    }
    Ok(())
});

// The decoders' warm-up (src/web/warmup.rs) runs out of sight: the page stays empty, its hash
// unwritten, until it has run (the `mi-warm-end` mark); and a file chosen as soon as the page has
// started (while the warm-up runs, or before it starts) loads with its own values.
e2e!(warm_up_stays_out_of_sight_and_gives_way_to_a_file, |b, env| {
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    let deadline = std::time::Instant::now() + harness::READY_TIMEOUT;
    loop {
        let done = b.js("return performance.getEntriesByName('mi-warm-end').length > 0;", vec![]).await?;
        if done == Value::Bool(true) {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "the warm-up did not end (no mi-warm-end mark)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = b.status().await?;
    ensure!(status.state == "empty", "after the warm-up the page shows {:?}: {:?}", status.state, status.text);
    let hash = b.js("return location.hash;", vec![]).await?;
    ensure!(hash == json!(""), "the warm-up wrote the hash: {hash}");

    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    let path = write_data(env, "during_warm_up.csv", small_csv("warm").as_bytes())?;
    upload_ready(b, &path).await?;
    check_small_cell(b, 0, 2, 3, "Full").await?;
    check_small_cell(b, 0, 1, 4, "Full").await
});

// A gzip- or zstd-compressed CSV (pandas writes `results.csv.gz` when the name says so) opens
// with its text's values; a cut one is an error naming it, and the data stays.
e2e!(compressed_csv_opens_as_its_text, |b, env| {
    use std::io::Write;
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    let csv = small_csv("packed");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes())?;
    let gz = gz.finish()?;
    let zst = zstd::encode_all(csv.as_bytes(), 3)?;
    for (name, bytes) in [("small.csv.gz", &gz), ("small.csv.zst", &zst)] {
        let path = write_data(env, name, bytes)?;
        upload_ready(b, &path).await.with_context(|| name.to_owned())?;
        update_hash(b, &[("step", "1"), ("variant", "Attn")]).await?;
        check_small_cell(b, 1, 2, 3, "Attn").await.with_context(|| name.to_owned())?;
        update_hash(b, &[("step", "0"), ("variant", "Full")]).await?;
        check_small_cell(b, 0, 1, 4, "Full").await.with_context(|| name.to_owned())?;
    }
    let cut = write_data(env, "cut.csv.gz", &gz[..gz.len() / 2])?;
    let status = upload_and_wait(b, &cut).await?;
    ensure!(
        status.state == "error" && status.text.contains("cut.csv.gz") && status.text.contains("cannot decompress it (gzip)"),
        "a cut gzip file: {status:?}"
    );
    check_small_cell(b, 0, 1, 4, "Full").await
});

// A folder dropped on the page opens as one dataset: its result files at any depth, each file's
// step and variant from its `generation_step=K/variant=V` folders (the files have neither
// column, as pyarrow, DuckDB and `mask-impact convert --partition-by` write a partitioned
// dataset), the other files in it left out. A folder without result files is an error naming
// it; the data stays.
e2e!(dropped_folder_opens_as_a_dataset, |b, env| {
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    let root = partitioned_dataset(env, "dropped_dataset")?;
    b.drop_paths(&[&root], 400.0, 400.0).await?;
    check_partitioned_dataset(b, "dropped_dataset").await?;

    let empty = folder_without_results(env)?;
    b.drop_paths(&[&empty], 400.0, 400.0).await?;
    check_folder_without_results(b).await
});

// The same through **Open folder…** (the browser's folder dialog): its files come with their
// paths from the folder.
e2e!(picked_folder_opens_as_a_dataset, |b, env| {
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    let root = partitioned_dataset(env, "picked_dataset")?;
    b.pick_folder(&root).await?;
    check_partitioned_dataset(b, "picked_dataset").await?;

    let empty = folder_without_results(env)?;
    b.pick_folder(&empty).await?;
    check_folder_without_results(b).await?;

    // A folder with nothing in it: no file comes with it, and the page says why.
    let nothing = env.data_dir.join("nothing_here");
    let _ = std::fs::remove_dir_all(&nothing);
    std::fs::create_dir_all(&nothing)?;
    b.pick_folder(&nothing).await?;
    // (The status shows the last folder's error until this one's comes.)
    let deadline = std::time::Instant::now() + harness::READY_TIMEOUT;
    loop {
        let status = b.status().await?;
        if status.state == "error" && status.text.contains("The chosen folder is empty") {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "an empty folder picked: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check_small_cell(b, 0, 2, 3, "Full").await
});

/// A folder `name` of the small CSV partitioned as pyarrow, DuckDB and `mask-impact convert
/// --partition-by` write it: `generation_step=K/variant=V/part-0.csv`, the files without either
/// column, with `_SUCCESS` and `notes.txt` beside them.
fn partitioned_dataset(env: &Env, name: &str) -> Result<PathBuf> {
    let root = env.data_dir.join(name);
    let _ = std::fs::remove_dir_all(&root);
    let csv = small_csv("folder");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers()?.clone();
    let keep: Vec<usize> = (0..header.len()).filter(|&i| !["generation_step", "variant"].contains(&&header[i])).collect();
    let mut parts: std::collections::BTreeMap<(String, String), csv::Writer<Vec<u8>>> = Default::default();
    for row in reader.records() {
        let row = row?;
        let part = parts.entry((row[0].to_string(), row[4].to_string())).or_insert_with(|| {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record(keep.iter().map(|&i| &header[i]));
            w
        });
        part.write_record(keep.iter().map(|&i| &row[i]))?;
    }
    for ((step, variant), part) in parts {
        let folder = root.join(format!("generation_step={step}")).join(format!("variant={variant}"));
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join("part-0.csv"), part.into_inner()?)?;
    }
    std::fs::write(root.join("_SUCCESS"), b"")?;
    std::fs::write(root.join("notes.txt"), b"not a result file")?;
    Ok(root)
}

/// The page shows the folder `name` of [`partitioned_dataset`]: its four files, every row,
/// values probed at steps and variants that only its folder names give.
async fn check_partitioned_dataset(b: &Browser, name: &str) -> Result<()> {
    b.wait_ready().await?;
    let status = b.status().await?;
    let expected = format!("{name}/ (4 files) · 60 rows");
    ensure!(status.text.starts_with(&expected), "status after opening the folder: {:?}", status.text);
    for (step, variant) in [(1, "Full"), (1, "Attn"), (0, "Full")] {
        update_hash(b, &[("step", &step.to_string()), ("variant", variant)]).await?;
        check_small_cell(b, step, 2, 3, variant).await?;
        check_small_cell(b, step, 1, 4, variant).await?;
    }
    Ok(())
}

fn folder_without_results(env: &Env) -> Result<PathBuf> {
    let empty = env.data_dir.join("no_results_here");
    std::fs::create_dir_all(&empty)?;
    std::fs::write(empty.join("readme.txt"), b"nothing to read")?;
    Ok(empty)
}

/// A folder without result files is an error naming it; the data stays.
async fn check_folder_without_results(b: &Browser) -> Result<()> {
    let status = b.wait_status(&["error"], harness::READY_TIMEOUT).await?;
    ensure!(
        status.text.contains("no_results_here") && status.text.contains("no result files"),
        "a folder without result files: {:?}",
        status.text
    );
    check_small_cell(b, 0, 2, 3, "Full").await
}

/// From a `file://` page, a CSV opens too (the page reads its chunks for the worker).
async fn file_page_opens_a_csv(b: &Browser, env: &Env, name: &str) -> Result<()> {
    let path = write_data(env, name, small_csv("file").as_bytes())?;
    upload_ready(b, &path).await?;
    check_small_cell(b, 0, 2, 3, "Full").await
}

// A row that repeats a cell already read: the view shows the later value, and the dataset
// panel counts the repeated row.
e2e!(repeated_rows_show_the_later_value_and_are_counted, |b, env| {
    // (step 0, layer 2, position 3, Full) again, l2 9.5 instead of 0.23.
    let facts = open_small_csv_and_row(b, env, "repeated.csv", "9.5,0.095").await?;
    let (_, _, probe) = probe_cell(b, 2, 3, "Full").await?;
    ensure!(num(&probe, "value").is_some_and(|v| close(v, 9.5)), "the later value is shown: {probe}");
    check_small_cell(b, 0, 2, 2, "Full").await?;
    ensure!(facts.contains("Repeated rows1 (the later value is kept)"), "dataset panel: {facts}");
    Ok(())
});

/// Opens [`small_csv`] with one more row, for (step 0, layer 2, position 3, Full) again, whose
/// metrics are `metrics` (`l2,cosine`), as `name`; returns the dataset panel's facts.
async fn open_small_csv_and_row(b: &Browser, env: &Env, name: &str, metrics: &str) -> Result<String> {
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    let csv = format!("{}0,2,\",\",3,Full,{metrics}\n", small_csv(name));
    let path = write_data(env, name, csv.as_bytes())?;
    upload_ready(b, &path).await?;
    let facts = b
        .js("return document.querySelector('section.info dl.facts').textContent", vec![])
        .await?;
    Ok(facts.as_str().unwrap_or_default().to_string())
}

// An infinite value (`inf` in a CSV) gets the top colour and is left out of its row's scale:
// the row's other cells are coloured relative to the largest finite value, and the dataset
// panel counts it.
e2e!(an_infinite_value_takes_the_top_colour_and_leaves_the_row_scale, |b, env| {
    // (step 0, layer 2, position 3, Full) again, as inf (the later value is kept).
    let facts = open_small_csv_and_row(b, env, "infinite.csv", "inf,0.01").await?;
    ensure!(facts.contains("Infinite values1 in l2_distance"), "dataset panel: {facts}");
    // Positions 1.. of the row (position 0 left out): 0.21, 0.22, inf, 0.24: the scale's top
    // is 0.24.
    let row_max = small_csv_l2(0, 2, 4, "Full");
    for position in [1, 2, 4] {
        let (x, y, _) = probe_cell(b, 2, position, "Full").await?;
        let want = small_csv_l2(0, 2, position, "Full");
        let allowed = expected_reds(want, row_max);
        let got = b.pixel(x, y).await?;
        ensure!(allowed.contains(&got), "position {position} ({want} of {row_max}): pixel {got:?}, expected one of {allowed:?}");
    }
    let (x, y, _) = probe_cell(b, 2, 3, "Full").await?;
    b.hover(x, y).await?;
    let tip = b.tooltip().await?.unwrap_or_default();
    ensure!(tip.contains("l2_distance: inf"), "tooltip of the inf cell: {tip:?}");
    let got = b.pixel(x, y).await?;
    ensure!(got == harness::reds_colour(20), "the inf cell: pixel {got:?}, expected the top colour");
    Ok(())
});

e2e!(file_repository_index_demo_is_ready, |b, env| {
    open_ready(b, &format!("{}?demo", env.file_index)).await?;
    check_state_keys(b).await?;
    file_page_opens_a_csv(b, env, "from_file_index.csv").await
});

e2e!(file_single_file_build_demo_is_ready, |b, env| {
    open_ready(b, &format!("{}?demo", env.file_single)).await?;
    check_state_keys(b).await?;
    file_page_opens_a_csv(b, env, "from_file_single.csv").await
});

e2e!(real_fixture_values_tooltip_and_colour_match_pyarrow, |b, env| {
    let Some(fixture) = harness::real_fixture() else {
        println!("skipped: ../shared/fixtures/real/image_question_hair.parquet is absent");
        return Ok(());
    };
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    upload_ready(b, &fixture).await?;
    update_hash(
        b,
        &[("view", "layers"), ("step", "1"), ("variant", "Full"), ("metric", "l2_distance"), ("norm", "row"), ("scale", "linear"), ("cmap", "reds")],
    )
    .await?;
    let state = b.state().await?;
    ensure!(state_text(&state, "step").as_deref() == Some("1"), "state step: {state:?}");
    ensure!(state_text(&state, "variant").as_deref() == Some("Full"), "state variant: {state:?}");
    let exclude0 = state.get("exclude0").cloned().unwrap_or(Value::Null);
    ensure!(matches!(exclude0, Value::Bool(true)) || exclude0 == json!("1") || exclude0 == json!("true"),
        "position 0 should be excluded from the scale by default: exclude0 = {exclude0}");

    let expected = harness::sample_cells(&fixture, 1, "Full", "l2_distance", 24)?;
    let cells = expected["cells"].as_array().context("no cells")?.clone();
    ensure!(cells.len() >= 20, "only {} cells sampled", cells.len());
    b.hover(1.0, 1.0).await?;
    let mut failures = Vec::new();
    let mut located = Vec::new();
    for cell in &cells {
        let (layer, position) = (cell["layer"].as_i64().unwrap_or(-1), cell["position"].as_i64().unwrap_or(-1));
        let want = cell["value"].as_f64().unwrap_or(f64::NAN);
        let (x, y, probe) = match probe_cell(b, layer, position, "Full").await {
            Ok(found) => found,
            Err(err) => {
                failures.push(format!("{err:#}"));
                continue;
            }
        };
        let got = num(&probe, "value");
        if !got.is_some_and(|g| close(g, want))
            || num(&probe, "layer") != Some(layer as f64)
            || num(&probe, "position") != Some(position as f64)
            || text(&probe, "variant").as_deref() != Some("Full")
            || text(&probe, "metric").as_deref() != Some("l2_distance")
            || text(&probe, "token").as_deref() != cell["token"].as_str()
            || num(&probe, "step") != Some(1.0)
        {
            failures.push(format!("probe {probe} differs from pyarrow {cell}"));
        }
        let row_max = cell["row_max_excluding_position_0"].as_f64().unwrap_or(f64::NAN);
        let allowed = expected_reds(want, row_max);
        match b.pixel(x, y).await {
            Ok(rgba) if allowed.contains(&rgba) => {}
            Ok(rgba) => failures.push(format!(
                "pixel at ({x:.1}, {y:.1}) for layer {layer} position {position} (value {want}, row max {row_max}) is {rgba:?}, expected one of {allowed:?}"
            )),
            Err(err) => failures.push(format!("{err:#}")),
        }
        located.push((x, y, cell.clone()));
    }
    for (x, y, cell) in &located {
        b.hover(*x, *y).await?;
        let tip = b.tooltip().await?.unwrap_or_default();
        let want = cell["value_4dp"].as_str().unwrap_or_default();
        let (layer, position) = (cell["layer"].to_string(), cell["position"].to_string());
        if !tip.contains(want) || !tip.contains(&layer) || !tip.contains(&position) || !tip.contains("Full") {
            failures.push(format!("tooltip {tip:?} at ({x:.1}, {y:.1}) lacks {want} / layer {layer} / position {position} / Full ({cell})"));
        }
    }
    if !failures.is_empty() {
        bail!("{} of {} cells wrong:\n  {}", failures.len(), cells.len(), failures.join("\n  "));
    }
    Ok(())
});

e2e!(step_and_variant_follow_selects_and_hash, |b, env| {
    let csv = write_data(env, "small.csv", small_csv("world").as_bytes())?;
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    upload_ready(b, &csv).await?;
    update_hash(b, &[("view", "layers"), ("step", "0"), ("variant", "Full")]).await?;
    check_small_cell(b, 0, 2, 3, "Full").await?;

    b.choose("step", "1").await?;
    let state = b.state().await?;
    ensure!(state_text(&state, "step").as_deref() == Some("1"), "after choosing step 1: state {state:?}");
    let hash = b.hash().await?;
    ensure!(hash.iter().any(|(k, v)| k == "step" && v == "1"), "after choosing step 1: hash {hash:?}");
    check_small_cell(b, 1, 2, 3, "Full").await?;

    b.choose("variant", "Attn").await?;
    let state = b.state().await?;
    ensure!(state_text(&state, "variant").as_deref() == Some("Attn"), "after choosing Attn: state {state:?}");
    check_small_cell(b, 1, 1, 4, "Attn").await?;

    update_hash(b, &[("step", "0"), ("variant", "Full")]).await?;
    let state = b.state().await?;
    ensure!(state_text(&state, "step").as_deref() == Some("0") && state_text(&state, "variant").as_deref() == Some("Full"),
        "after setting the hash: state {state:?}");
    let selects = b
        .js("return ['step', 'variant'].map(k => (document.querySelector('select[name=' + k + ']') || {}).value);", vec![])
        .await?;
    ensure!(selects == json!(["0", "Full"]), "the selects did not follow the hash: {selects}");
    check_small_cell(b, 0, 0, 1, "Full").await
});

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

async fn check_hostile(b: &Browser) -> Result<()> {
    ensure!(!b.alert_open().await, "an alert opened: the token ran as HTML");
    let injected = b.js("return document.querySelectorAll('img[src=\"x\"], img[onerror]').length;", vec![]).await?;
    ensure!(injected == json!(0), "the token was injected as an element ({injected} <img>)");
    let (x, y, probe) = probe_cell(b, 0, 2, "Full").await?;
    ensure!(text(&probe, "token").as_deref() == Some(HOSTILE), "probe token {probe}, expected the literal text");
    b.hover(x, y).await?;
    let tip = b.tooltip().await?.unwrap_or_default();
    ensure!(tip.contains(HOSTILE), "tooltip {tip:?} does not show the token literally");
    ensure!(!b.alert_open().await, "an alert opened after hovering");
    Ok(())
}

e2e!(hostile_token_shows_literally_and_runs_nothing, |b, env| {
    let csv = write_data(env, "hostile.csv", small_csv(HOSTILE).as_bytes())?;
    let parquet = env.data_dir.join("hostile.parquet");
    let status = std::process::Command::new("python3")
        .args(["-c", "import sys, pyarrow.csv as c, pyarrow.parquet as p; p.write_table(c.read_csv(sys.argv[1]), sys.argv[2], compression='zstd')"])
        .arg(&csv)
        .arg(&parquet)
        .status()
        .context("python3 with pyarrow, to write the Parquet version")?;
    ensure!(status.success(), "writing {} with pyarrow failed", parquet.display());
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    for file in [&csv, &parquet] {
        upload_ready(b, file).await?;
        update_hash(b, &[("view", "layers"), ("step", "0"), ("variant", "Full")]).await?;
        check_hostile(b).await.with_context(|| file.display().to_string())?;
    }
    Ok(())
});

e2e!(url_parameter_and_open_url_load_over_http, |b, env| {
    write_data(env, "url-a.csv", small_csv("alpha").as_bytes())?;
    write_data(env, "url-b.csv", small_csv("beta").as_bytes())?;
    open_ready(b, &env.http("index.html?url=e2e-data/url-a.csv")).await?;
    update_hash(b, &[("view", "layers"), ("step", "0"), ("variant", "Full")]).await?;
    let (_, _, probe) = probe_cell(b, 1, 2, "Full").await?;
    ensure!(text(&probe, "token").as_deref() == Some("alpha"), "?url= did not load url-a.csv: {probe}");
    check_small_cell(b, 0, 1, 2, "Full").await?;

    let absolute = env.http("e2e-data/url-b.csv");
    b.call("openUrl", vec![json!(absolute)]).await?;
    update_hash(b, &[("step", "0"), ("variant", "Full")]).await?;
    let (_, _, probe) = probe_cell(b, 1, 2, "Full").await?;
    ensure!(text(&probe, "token").as_deref() == Some("beta"), "openUrl did not load url-b.csv: {probe}");

    match b.call("openUrl", vec![json!("e2e-data/does-not-exist.csv")]).await {
        Ok(v) => bail!("openUrl of a missing file resolved ({v})"),
        Err(err) => ensure!(format!("{err:#}").contains("does-not-exist"), "rejection should name the file: {err:#}"),
    }
    let status = b.status().await?;
    ensure!(status.state == "error", "status after a failed openUrl: {status:?}");
    let (_, _, probe) = probe_cell(b, 1, 2, "Full").await?;
    ensure!(text(&probe, "token").as_deref() == Some("beta"), "the previous view should stay: {probe}");
    Ok(())
});

e2e!(bad_file_reports_error_and_keeps_previous_view, |b, env| {
    let good = write_data(env, "good.csv", small_csv("kept").as_bytes())?;
    let bad = write_data(env, "bad-columns.csv", b"alpha,beta\n1,2\n3,4\n")?;
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    upload_ready(b, &good).await?;
    update_hash(b, &[("view", "layers"), ("step", "1"), ("variant", "Attn")]).await?;
    let before = b.state().await?;
    check_small_cell(b, 1, 2, 4, "Attn").await?;

    let status = upload_and_wait(b, &bad).await?;
    ensure!(status.state == "error", "a file without the needed columns gave {status:?}");
    ensure!(status.text.contains("bad-columns.csv"), "the error should name the file: {:?}", status.text);
    ensure!(status.text.contains("l2_distance") || status.text.contains("token_position"),
        "the error should say which columns are needed: {:?}", status.text);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = b.state().await?;
    ensure!(before == after, "the view changed after the error: {before:?} → {after:?}");
    check_small_cell(b, 1, 2, 4, "Attn").await?;
    let (_, _, probe) = probe_cell(b, 2, 2, "Attn").await?;
    ensure!(text(&probe, "token").as_deref() == Some("kept"), "previous data should stay: {probe}");
    Ok(())
});
