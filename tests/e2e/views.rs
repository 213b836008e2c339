//! The views of issue #5 in the browser: grid geometry, heads view, normalisation modes, the
//! tooltip and the keys. The data set and every expected value come from
//! `tests/e2e/views_fixture.py` (pyarrow reads the file back; intensities and colour levels are
//! computed there from the documented definitions), never from the viewer's code.

use super::harness::{self, reds_colour, state_text, Browser, Env};
use super::{close, num, probe_cell, text, upload_ready};
use anyhow::{bail, ensure, Context, Result};
use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::{json, Value};

/// Writes the view fixture into the served data dir (once per run), opens `index.html` and loads it through
/// the file input. Returns the expectations.
async fn open_views(b: &Browser, env: &Env) -> Result<Value> {
    static EXPECTED: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let path = env.data_dir.join("views.parquet");
    let expected = match EXPECTED.get() {
        Some(v) if path.exists() => v.clone(),
        _ => {
            let v = harness::views_fixture(&path)?;
            EXPECTED.get_or_init(|| v.clone());
            v
        }
    };
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    upload_ready(b, &path).await?;
    Ok(expected)
}

/// Replaces the whole hash with the pairs of `pairs` (a JSON object of strings) and checks that
/// the page took the keys that define the picture.
async fn show(b: &Browser, pairs: &Value) -> Result<()> {
    let map = pairs.as_object().context("hash pairs")?;
    let hash = b
        .js(
            "return Object.entries(arguments[0]).map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(v)).join('&');",
            vec![pairs.clone()],
        )
        .await?;
    b.set_hash(hash.as_str().unwrap_or_default()).await?;
    let state = b.state().await?;
    for key in ["view", "step", "variant", "metric", "layer", "norm", "scale"] {
        let want = map.get(key).and_then(Value::as_str);
        if want.is_some() && (key != "layer" || map.get("view").and_then(Value::as_str) != Some("layers")) {
            ensure!(state_text(&state, key).as_deref() == want, "after setting the hash {hash}: state {key} = {:?}, expected {want:?}", state.get(key));
        }
    }
    Ok(())
}

/// Probes the cell `cell` (`layer`, `position`, `variant`, expected `value`, `token`, `levels`)
/// and checks the probe and the pixel colour there. Problems are pushed onto `failures`.
async fn check_cell(b: &Browser, cell: &Value, layer: i64, variant: &str, failures: &mut Vec<String>) -> Result<Option<(f64, f64)>> {
    let position = cell["position"].as_i64().context("position")?;
    let (x, y, probe) = match probe_cell(b, layer, position, variant).await {
        Ok(found) => found,
        Err(err) => {
            failures.push(format!("{err:#}"));
            return Ok(None);
        }
    };
    let got = num(&probe, "value");
    let want = cell["value"].as_f64();
    let value_ok = match (got, want) {
        (Some(g), Some(w)) => close(g, w),
        (None, None) => probe.get("value").is_some_and(Value::is_null),
        _ => false,
    };
    if !value_ok
        || num(&probe, "position") != Some(position as f64)
        || num(&probe, "layer") != Some(layer as f64)
        || text(&probe, "variant").as_deref() != Some(variant)
        || text(&probe, "token").as_deref() != cell["token"].as_str()
    {
        failures.push(format!("probe at ({x:.1}, {y:.1}) gave {probe}, expected {cell}"));
    }
    if cell["value"].is_null() {
        match b.pixel(x, y).await {
            Ok(rgba) if harness::is_reds_colour(rgba) => failures.push(format!("pixel at ({x:.1}, {y:.1}) of a cell without data is {rgba:?}, a colour of the value scale: {cell}")),
            Ok(_) => {}
            Err(err) => failures.push(format!("{err:#}")),
        }
    }
    if let Some(levels) = cell["levels"].as_array() {
        let allowed: Vec<[u8; 4]> = levels.iter().filter_map(Value::as_u64).map(reds_colour).collect();
        match b.pixel(x, y).await {
            Ok(rgba) if allowed.contains(&rgba) => {}
            Ok(rgba) => failures.push(format!("pixel at ({x:.1}, {y:.1}) is {rgba:?}, expected one of {allowed:?} for {cell}")),
            Err(err) => failures.push(format!("{err:#}")),
        }
    }
    Ok(Some((x, y)))
}

fn report(what: &str, failures: Vec<String>) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    bail!("{what}: {} problems:\n  {}", failures.len(), failures.join("\n  "))
}

/// Row-major grid geometry of located image tokens (`k` → cell centre): token k + `cols` lies
/// directly below token k, token k + 1 directly right of it in the same row with a square step,
/// token 240 starts the last row of a 16 × 16 grid (checked when tokens 0, 240 and 255 are given).
fn check_grid_geometry(at: &std::collections::BTreeMap<i64, (f64, f64)>, cols: i64, failures: &mut Vec<String>) -> Result<()> {
    let mut pairs = 0;
    for (&k, &(x, y)) in at {
        if let Some(&(x2, y2)) = at.get(&(k + cols)) {
            pairs += 1;
            if (x2 - x).abs() > 0.5 || y2 <= y + 1.0 {
                failures.push(format!("image token {} at ({x2:.1}, {y2:.1}) is not directly below image token {k} at ({x:.1}, {y:.1})", k + cols));
            }
            if let Some(&(x1, y1)) = at.get(&(k + 1)).filter(|_| (k + 1) % cols != 0) {
                // Square cells: one step right is as long as one step down.
                if (y1 - y).abs() > 0.5 || x1 <= x + 1.0 || ((x1 - x) - (y2 - y)).abs() > 1.0 {
                    failures.push(format!("token {} at ({x1:.1}, {y1:.1}) is not the square cell right of token {k} at ({x:.1}, {y:.1}) (below: {:.1})", k + 1, y2 - y));
                }
            }
        }
    }
    ensure!(pairs >= 5 || !failures.is_empty(), "only {pairs} (k, k + {cols}) pairs located");
    // Token 240 starts the last row: below token 224, left of every other cell in its row.
    if let (Some(&(x0, _)), Some(&(x240, y240)), Some(&(_, y255))) = (at.get(&0), at.get(&240), at.get(&255)) {
        if (x240 - x0).abs() > 0.5 || (y255 - y240).abs() > 0.5 {
            failures.push(format!("token 240 at ({x240:.1}, {y240:.1}) should start the last row (token 0 at x {x0:.1}, token 255 at y {y255:.1})"));
        }
    }
    Ok(())
}

// Grid view: the 256 image tokens form a 16 × 16 grid, row-major: token k + 16 lies directly
// below token k, token k + 1 directly right of it (same row); probes there give the right
// positions, tokens and values; the colours follow the image tokens' own scale (first image
// token left out, or in with `exclude0=off`); text tokens are in the strip; `grid=8x32` lays
// them out 8 × 32.
e2e!(grid_view_places_image_token_k_plus_16_below_k, |b, env| {
    let expected = open_views(b, env).await?;
    let grid = &expected["grid"];
    show(b, &grid["hash"]).await?;
    let layer = grid["hash"]["layer"].as_str().and_then(|s| s.parse().ok()).context("layer")?;
    let variant = grid["hash"]["variant"].as_str().context("variant")?;
    let cols = grid["cols"].as_i64().context("cols")?;
    let first = grid["image_first"].as_i64().context("image_first")?;
    let mut failures = Vec::new();
    let mut at = std::collections::BTreeMap::new();
    for cell in grid["cells"].as_array().context("cells")? {
        if let Some(xy) = check_cell(b, cell, layer, variant, &mut failures).await? {
            at.insert(cell["k"].as_i64().context("k")?, xy);
        }
    }
    check_grid_geometry(&at, cols, &mut failures)?;
    // Text tokens: in the strip, not in the grid.
    for cell in grid["text_cells"].as_array().context("text_cells")? {
        let position = cell["position"].as_i64().context("position")?;
        match probe_cell(b, layer, position, variant).await {
            Ok((_, _, probe)) => {
                let value_ok = match (num(&probe, "value"), cell["value"].as_f64()) {
                    (Some(g), Some(w)) => close(g, w),
                    (None, None) => true,
                    _ => false,
                };
                if num(&probe, "position") != Some(position as f64) || text(&probe, "token").as_deref() != cell["token"].as_str() || !value_ok {
                    failures.push(format!("text token probe {probe}, expected {cell}"));
                }
            }
            Err(err) => failures.push(format!("{err:#}")),
        }
    }
    // Rows × columns set by hand (`grid=8x32`): token k + 32 lies below token k.
    let mut hash = grid["hash"].clone();
    hash["grid"] = json!("8x32");
    show(b, &hash).await?;
    let mut wide = std::collections::BTreeMap::new();
    for k in [0i64, 1, 32, 33, 64, 100, 132, 200, 232] {
        let position = first + k;
        match probe_cell(b, layer, position, variant).await {
            Ok((x, y, probe)) if num(&probe, "position") == Some(position as f64) => {
                wide.insert(k, (x, y));
            }
            Ok((x, y, probe)) => failures.push(format!("grid 8x32: probe at ({x:.1}, {y:.1}) for image token {k} gave {probe}")),
            Err(err) => failures.push(format!("grid 8x32: {err:#}")),
        }
    }
    let mut here = Vec::new();
    check_grid_geometry(&wide, 32, &mut here)?;
    failures.extend(here.into_iter().map(|f| format!("[grid 8x32] {f}")));

    // The first image token in the scale, square-root scaling: colours change as computed.
    let all = &grid["all_sqrt"];
    show(b, &all["hash"]).await?;
    let mut here = Vec::new();
    for cell in all["cells"].as_array().context("all_sqrt cells")? {
        check_cell(b, cell, layer, variant, &mut here).await?;
    }
    failures.extend(here.into_iter().map(|f| format!("[exclude0 off, sqrt] {f}")));
    report("grid view", failures)
});

// Layers and heads views under each normalisation (row / column / global), with and without
// position 0, linear / sqrt / log / percentile scaling: the probed values are pyarrow's and the
// pixel colours are the levels computed independently in views_fixture.py.
e2e!(normalisation_modes_colour_cells_as_computed_independently, |b, env| {
    let expected = open_views(b, env).await?;
    let mut failures = Vec::new();
    for mode in expected["modes"].as_array().context("modes")? {
        let hash = &mode["hash"];
        show(b, hash).await?;
        let label = format!(
            "{} view, norm {}, exclude0 {}, scale {}",
            hash["view"].as_str().unwrap_or_default(),
            hash["norm"].as_str().unwrap_or_default(),
            hash["exclude0"].as_str().unwrap_or_default(),
            hash["scale"].as_str().unwrap_or_default()
        );
        let mut here = Vec::new();
        for cell in mode["cells"].as_array().context("cells")? {
            let layer = cell["layer"].as_i64().context("layer")?;
            let variant = cell["variant"].as_str().context("variant")?.to_owned();
            check_cell(b, cell, layer, &variant, &mut here).await?;
        }
        failures.extend(here.into_iter().map(|f| format!("[{label}] {f}")));
    }
    report("normalisation modes", failures)
});

// Heads view with `share=on`: each variant's value over Full's at the same cell.
e2e!(heads_view_share_of_full_matches_pyarrow_ratio, |b, env| {
    let expected = open_views(b, env).await?;
    let share = &expected["share"];
    show(b, &share["hash"]).await?;
    let layer = share["hash"]["layer"].as_str().and_then(|s| s.parse().ok()).context("layer")?;
    let mut failures = Vec::new();
    for cell in share["cells"].as_array().context("cells")? {
        let position = cell["position"].as_i64().context("position")?;
        let variant = cell["variant"].as_str().context("variant")?;
        let (_, _, probe) = match probe_cell(b, layer, position, variant).await {
            Ok(found) => found,
            Err(err) => {
                failures.push(format!("{err:#}"));
                continue;
            }
        };
        let ok = match (num(&probe, "value"), cell["value"].as_f64()) {
            (Some(g), Some(w)) => (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            (None, None) => true,
            _ => false,
        };
        if !ok || text(&probe, "variant").as_deref() != Some(variant) || num(&probe, "position") != Some(position as f64) {
            failures.push(format!("probe {probe}, expected the share {cell}"));
        }
    }
    report("heads view, share of Full", failures)
});

// The tooltip of a hovered cell: value with 4 decimals, layer, position, token, step, variant,
// metric (CONTRACT).
e2e!(tooltip_names_value_layer_position_token_step_variant_metric, |b, env| {
    let expected = open_views(b, env).await?;
    let tooltip = &expected["tooltip"];
    show(b, &tooltip["hash"]).await?;
    let mut failures = Vec::new();
    let cells = tooltip["cells"].as_array().context("cells")?;
    ensure!(cells.len() >= 3, "only {} tooltip cells", cells.len());
    for cell in cells {
        let layer = cell["layer"].as_i64().context("layer")?;
        let position = cell["position"].as_i64().context("position")?;
        let variant = cell["variant"].as_str().context("variant")?;
        let Some((x, y)) = b.locate(layer, position, variant).await? else {
            failures.push(format!("locate is null for {cell}"));
            continue;
        };
        b.hover(1.0, 1.0).await?;
        b.hover(x, y).await?;
        let tip = b.tooltip().await?.unwrap_or_default();
        let wants = [
            cell["value_4dp"].as_str().unwrap_or_default().to_owned(),
            format!("layer {layer}"),
            format!("position {position}"),
            cell["token"].as_str().unwrap_or_default().to_owned(),
            format!("step {}", cell["step"]),
            variant.to_owned(),
            cell["metric"].as_str().unwrap_or_default().to_owned(),
        ];
        let missing: Vec<&String> = wants.iter().filter(|w| !tip.contains(w.as_str())).collect();
        if !missing.is_empty() {
            failures.push(format!("tooltip {tip:?} at ({x:.1}, {y:.1}) lacks {missing:?} ({cell})"));
        }
    }
    report("tooltip", failures)
});

/// The hash as key → value.
async fn hash_map(b: &Browser) -> Result<std::collections::BTreeMap<String, String>> {
    Ok(b.hash().await?.into_iter().collect())
}

/// Presses `key` and returns the hash value of `field` afterwards.
async fn press_get(b: &Browser, key: char, field: &str) -> Result<String> {
    b.press(key).await?;
    Ok(hash_map(b).await?.get(field).cloned().unwrap_or_default())
}

/// The visible zoom window's length, from the hash (`a-b`); all positions when absent.
fn zoom_len(zoom: &str, n_positions: i64) -> i64 {
    match zoom.split_once('-') {
        Some((a, b)) => match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(a), Ok(b)) => b - a + 1,
            _ => n_positions,
        },
        None if zoom.is_empty() || zoom == "all" || zoom == "none" => n_positions,
        None => 1,
    }
}

// Each documented key (README "Views and keys") changes the hash and state as documented, without
// a history entry per press; keys do nothing while typing in a field.
e2e!(keys_change_the_hash_as_documented_and_not_while_typing, |b, env| {
    let expected = open_views(b, env).await?;
    let n_positions = expected["n_positions"].as_i64().context("n_positions")?;
    show(b, &json!({"view": "layers", "step": "0", "layer": "0", "variant": "Full", "metric": "l2_distance", "scale": "linear", "norm": "row"})).await?;
    b.blur().await?;
    let history_before = b.js("return history.length;", vec![]).await?;
    let (left, right, up, down) = (char::from(Key::Left), char::from(Key::Right), char::from(Key::Up), char::from(Key::Down));

    // ← / →: previous / next layer.
    ensure!(press_get(b, right, "layer").await? == "1", "→ from layer 0: hash {:?}", hash_map(b).await?);
    ensure!(press_get(b, right, "layer").await? == "2", "→ from layer 1: hash {:?}", hash_map(b).await?);
    ensure!(press_get(b, left, "layer").await? == "1", "← from layer 2: hash {:?}", hash_map(b).await?);
    let state = b.state().await?;
    ensure!(state_text(&state, "layer").as_deref() == Some("1"), "state after ←: {state:?}");
    // ↑ / ↓: previous / next generation step.
    ensure!(press_get(b, down, "step").await? == "1", "↓ from step 0: hash {:?}", hash_map(b).await?);
    ensure!(press_get(b, down, "step").await? == "2", "↓ from step 1: hash {:?}", hash_map(b).await?);
    ensure!(press_get(b, up, "step").await? == "1", "↑ from step 2: hash {:?}", hash_map(b).await?);
    let state = b.state().await?;
    ensure!(state_text(&state, "step").as_deref() == Some("1"), "state after ↑: {state:?}");

    // M: next metric, through every metric of the file and back.
    let metrics: Vec<String> = expected["metrics"].as_array().context("metrics")?.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect();
    let mut seen = vec!["l2_distance".to_owned()];
    for _ in 0..metrics.len() {
        seen.push(press_get(b, 'm', "metric").await?);
    }
    ensure!(seen.last() == seen.first(), "M {} times should come back to l2_distance: {seen:?}", metrics.len());
    let mut visited = seen[..metrics.len()].to_vec();
    visited.sort();
    let mut all = metrics.clone();
    all.sort();
    ensure!(visited == all, "M should visit every metric once: {seen:?}, file has {metrics:?}");

    // S: linear → sqrt → log → percentile → linear.
    let mut scales = Vec::new();
    for _ in 0..4 {
        scales.push(press_get(b, 's', "scale").await?);
    }
    ensure!(scales == ["sqrt", "log", "percentile", "linear"], "S from linear gave {scales:?}");
    let state = b.state().await?;
    ensure!(state_text(&state, "scale").as_deref() == Some("linear"), "state after S×4: {state:?}");

    // V: next variant, through every variant and back.
    let variants: Vec<String> = expected["variants"].as_array().context("variants")?.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect();
    let mut seen = vec!["Full".to_owned()];
    for _ in 0..variants.len() {
        seen.push(press_get(b, 'v', "variant").await?);
    }
    ensure!(seen.last() == seen.first(), "V {} times should come back to Full: {seen:?}", variants.len());
    let mut visited = seen[..variants.len()].to_vec();
    visited.sort();
    let mut all = variants.clone();
    all.sort();
    ensure!(visited == all, "V should visit every variant once: {seen:?}, file has {variants:?}");

    // G: layers → grid → heads → layers.
    let mut views = Vec::new();
    for _ in 0..3 {
        views.push(press_get(b, 'g', "view").await?);
    }
    ensure!(views == ["grid", "heads", "layers"], "G from layers gave {views:?}");
    let state = b.state().await?;
    ensure!(state_text(&state, "view").as_deref() == Some("layers"), "state after G×3: {state:?}");

    // + / -: zoom in / out on positions; 0 shows all.
    let zoom_in = press_get(b, '+', "zoom").await?;
    let len_in = zoom_len(&zoom_in, n_positions);
    ensure!(len_in < n_positions, "+ should zoom in: zoom {zoom_in:?} of {n_positions} positions");
    let zoom_in2 = press_get(b, '+', "zoom").await?;
    let len_in2 = zoom_len(&zoom_in2, n_positions);
    ensure!(len_in2 < len_in, "+ again should zoom in further: {zoom_in:?} → {zoom_in2:?}");
    let zoom_out = press_get(b, '-', "zoom").await?;
    ensure!(zoom_len(&zoom_out, n_positions) > len_in2, "- should zoom out: {zoom_in2:?} → {zoom_out:?}");
    let zoom_all = press_get(b, '0', "zoom").await?;
    ensure!(zoom_len(&zoom_all, n_positions) == n_positions, "0 should show all positions: zoom {zoom_all:?}");

    // Click pins a position (hash `pin`); Esc unpins.
    let (x, y) = b.locate(1, 100, "Full").await?.context("locate(layer 1, position 100, Full) is null")?;
    b.click_at(x, y).await?;
    let pinned = hash_map(b).await?.get("pin").cloned().unwrap_or_default();
    ensure!(pinned == "100", "clicking the cell of position 100 should pin it: hash pin {pinned:?}");
    let unpinned = press_get(b, char::from(Key::Escape), "pin").await?;
    ensure!(unpinned.is_empty() || unpinned == "none", "Esc should unpin: hash pin {unpinned:?}");

    let history_after = b.js("return history.length;", vec![]).await?;
    ensure!(history_before == history_after, "key presses added history entries: {history_before} → {history_after}");

    // ?: the help overlay, listing the keys; ? or Esc closes it; the view does not change.
    let before = hash_map(b).await?;
    let help_visible = "const d = document.querySelector('[role=dialog]');\
        return d && !d.hidden && d.getClientRects().length > 0 ? d.textContent : null;";
    b.press('?').await?;
    let help = b.js(help_visible, vec![]).await?;
    let help = help.as_str().with_context(|| "? did not show a visible [role=dialog]".to_owned())?;
    for key in ["M", "S", "V", "G"] {
        ensure!(help.contains(key), "the help overlay does not list {key}: {help:?}");
    }
    b.press(char::from(Key::Escape)).await?;
    ensure!(b.js(help_visible, vec![]).await?.is_null(), "Esc did not close the help");
    b.press('?').await?;
    ensure!(!b.js(help_visible, vec![]).await?.is_null(), "? did not reopen the help");
    b.press('?').await?;
    ensure!(b.js(help_visible, vec![]).await?.is_null(), "? did not close the help");
    ensure!(hash_map(b).await? == before, "the help changed the hash: {before:?} → {:?}", hash_map(b).await?);

    // Typing in a field: no key acts on the view.
    let field = b.client.find(Locator::Css("input[name=layers]")).await.context("no input[name=layers]")?;
    field.click().await.map_err(|e| anyhow::anyhow!("clicking input[name=layers]: {e}"))?;
    let focused = b.js("return document.activeElement && document.activeElement.getAttribute('name');", vec![]).await?;
    ensure!(focused == json!("layers"), "input[name=layers] did not take the focus: {focused}");
    let state_before = b.state().await?;
    let typed = format!("msgvMSGV?+-0{right}{left}{up}{down}");
    field.send_keys(&typed).await.map_err(|e| anyhow::anyhow!("typing into input[name=layers]: {e}"))?;
    b.settle().await?;
    ensure!(hash_map(b).await? == before, "typing in a field changed the hash: {before:?} → {:?}", hash_map(b).await?);
    ensure!(b.state().await? == state_before, "typing in a field changed the state");
    ensure!(b.js(help_visible, vec![]).await?.is_null(), "typing ? in a field opened the help");
    // Leave the field as it was.
    b.js("const f = document.querySelector('input[name=layers]'); f.value = ''; f.blur();", vec![]).await?;
    b.settle().await?;
    ensure!(press_get(b, right, "layer").await? == "2", "→ after leaving the field: hash {:?}", hash_map(b).await?);
    Ok(())
});

/// Runs `python3 tests/e2e/real_views.py` (pyarrow) on the real file.
fn real_views(parquet: &std::path::Path, step: i64, layer: i64) -> Result<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/real_views.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(parquet)
        .args(["--step", &step.to_string(), "--layer", &layer.to_string(), "--count", "30"])
        .output()
        .context("running python3 (with pyarrow) for the expected values")?;
    ensure!(out.status.success(), "{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).context("parsing real_views.py output")
}

// The real file (Qwen-VL: `<|vision_start|>` then 256 `<|image_pad|>`): the grid view lays the
// image tokens out 16 × 16 (token k + 16 directly below token k) with pyarrow's values, and the
// heads view shows pyarrow's value for every variant probed (Full, Attn, Head_0…Head_31).
e2e!(real_fixture_grid_is_16_by_16_and_heads_values_match_pyarrow, |b, env| {
    let Some(fixture) = harness::real_fixture() else {
        println!("skipped: ../shared/fixtures/real/image_question_hair.parquet is absent");
        return Ok(());
    };
    let (step, layer) = (1, 20);
    let expected = real_views(&fixture, step, layer)?;
    let n_image = expected["image_positions"].as_array().map_or(0, Vec::len);
    ensure!(n_image == 256, "pyarrow finds {n_image} image tokens in the real file, the test expects 256");
    b.goto(&env.http("index.html")).await?;
    b.wait_api().await?;
    upload_ready(b, &fixture).await?;
    let (step_s, layer_s) = (step.to_string(), layer.to_string());
    show(b, &json!({"view": "grid", "step": step_s, "layer": layer_s, "variant": "Full", "metric": "l2_distance"})).await?;
    let mut failures = Vec::new();
    let mut at = std::collections::BTreeMap::new();
    for cell in expected["grid_cells"].as_array().context("grid_cells")? {
        if let Some(xy) = check_cell(b, cell, layer, "Full", &mut failures).await? {
            at.insert(cell["k"].as_i64().context("k")?, xy);
        }
    }
    check_grid_geometry(&at, 16, &mut failures)?;

    show(b, &json!({"view": "heads", "step": step_s, "layer": layer_s, "variant": "Full", "metric": "l2_distance"})).await?;
    let cells = expected["heads_cells"].as_array().context("heads_cells")?;
    let variants: std::collections::BTreeSet<&str> = cells.iter().filter_map(|c| c["variant"].as_str()).collect();
    ensure!(variants.len() >= 5, "only {} variants sampled: {variants:?}", variants.len());
    for cell in cells {
        let variant = cell["variant"].as_str().context("variant")?;
        check_cell(b, cell, layer, variant, &mut failures).await?;
    }
    report("real file, grid and heads views", failures)
});
