//! Shared by the ingest integration tests: the generated fixtures and their manifest
//! (`tests/fixtures/make_fixtures.py`, which computes the expected values with pyarrow/pandas).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mask_impact::cube::Cube;
use serde_json::Value;

/// The folder of generated fixtures, made (or refreshed: the script is idempotent) on first use.
pub fn fixtures() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("tests/fixtures/generated");
        let script = root.join("tests/fixtures/make_fixtures.py");
        let status = Command::new("python3").arg(&script).arg(&dir).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!(
                "{} failed ({s}); it needs python3 with numpy, pyarrow, pandas, polars, duckdb and fastparquet (it tries `pip install` itself)",
                script.display()
            ),
            Err(e) => panic!("cannot run python3 {}: {e}; python3 is needed to make the ingest fixtures", script.display()),
        }
        assert!(dir.join("manifest.json").exists(), "{} did not write manifest.json", script.display());
        dir
    })
}

/// The parsed manifest.
pub fn manifest() -> &'static Value {
    static M: OnceLock<Value> = OnceLock::new();
    M.get_or_init(|| {
        let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
        serde_json::from_str(&text).expect("manifest.json is JSON")
    })
}

/// Manifest entries with `expect` equal to `expect`.
pub fn entries(expect: &str) -> Vec<&'static Value> {
    let files = manifest()["files"].as_array().expect("files");
    let v: Vec<_> = files.iter().filter(|e| e["expect"] == expect).collect();
    assert!(!v.is_empty(), "the manifest lists no file to {expect}");
    v
}

/// Compares a cube with an entry's expected shape, metrics and sampled cells. Returns the
/// differences (empty when all agree).
pub fn check_cube(cube: &Cube, entry: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let shape = &entry["shape"];
    let got = [
        ("prompts", cube.prompts.len()),
        ("steps", cube.steps.len()),
        ("layers", cube.layers.len()),
        ("variants", cube.variants.len()),
    ];
    for (k, n) in got {
        if shape[k].as_u64() != Some(n as u64) {
            bad.push(format!("{k}: expected {}, got {n}", shape[k]));
        }
    }
    let positions: Vec<u64> = cube.prompts.iter().map(|p| p.n_positions() as u64).collect();
    let want: Vec<u64> = shape["positions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    if positions != want {
        bad.push(format!("positions: expected {want:?}, got {positions:?}"));
    }
    let metrics: Vec<&str> = cube.metrics.iter().map(|m| m.name.as_str()).collect();
    let want: Vec<&str> = entry["metrics"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if metrics != want {
        bad.push(format!("metrics: expected {want:?}, got {metrics:?}"));
    }
    for c in entry["cells"].as_array().into_iter().flatten() {
        let prompt = c["prompt"].as_str().unwrap_or_default();
        let where_ = format!(
            "cell prompt={prompt} step={} layer={} position={} variant={} metric={}",
            c["step"], c["layer"], c["position"], c["variant"], c["metric"]
        );
        let (Some(p), Some(s), Some(l), Some(v), Some(m)) = (
            cube.prompt_index(prompt),
            c["step"].as_i64().and_then(|s| cube.step_index(s)),
            c["layer"].as_i64().and_then(|l| cube.layer_index(l)),
            c["variant"].as_str().and_then(|v| cube.variant_index(v)),
            c["metric"].as_str().and_then(|m| cube.metric_index(m)),
        ) else {
            bad.push(format!("{where_}: not in the cube's axes"));
            continue;
        };
        let pos = c["position"].as_u64().unwrap_or(u64::MAX) as usize;
        let got = cube.value(m, cube.cell(p, s, v, l), pos);
        let want = c["value"].as_f64().map(|x| x as f32);
        if got.map(f32::to_bits) != want.map(f32::to_bits) {
            bad.push(format!("{where_}: expected {want:?}, got {got:?}"));
        }
        let token = cube.prompts[p].token(pos);
        let want = c["token"].as_str();
        if token != want {
            bad.push(format!("{where_}: token expected {want:?}, got {token:?}"));
        }
    }
    bad
}
