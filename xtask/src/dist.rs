//! `cargo xtask dist`: builds the viewer and writes
//! - `dist/`: a static site (the three pages, `www/` assets, `mask-impact-viewer.js` which fetches
//!   `mask_impact_page.wasm` and `mask_impact_worker.wasm` next to itself) that works unchanged on
//!   any static host and sub-path;
//! - `dist/mask-impact-viewer.html`: one self-contained file (CSS, loader, glues and wasm inline,
//!   its Content-Security-Policy carrying the sha256 of its inline script) that works when
//!   e-mailed and opened from disk;
//! - the repository's top-level `mask-impact-viewer.js` (git-ignored) with the wasm inline, so that
//!   the repository's own `index.html` works from `file://`.
//!
//! The loader is `www/loader.js`, a template: see the comment at its top for the loader ↔ page
//! interface.

use crate::build::{self, Role, WasmBuild};
use crate::prereq::{self, Needs};
use crate::util::{repo_root, step};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use sha2::Digest as _;
use std::path::{Path, PathBuf};

/// File name of the generated loader script (pages reference it by this relative path).
pub const LOADER_FILE_NAME: &str = "mask-impact-viewer.js";
/// File name of the self-contained single-file build in `dist/`.
pub const SINGLE_FILE_NAME: &str = "mask-impact-viewer.html";
/// The stylesheet pages reference by this relative path.
const CSS_PATH: &str = "www/viewer.css";
/// The pages of the site; `index.html` is required, the others are copied when present.
const PAGES: &[&str] = &["index.html", "visualize_results.html", "visualize_results_json.html"];

/// Entry point of `cargo xtask dist [--wasm-opt]`.
pub fn run(args: &[String]) -> Result<()> {
    prereq::ensure(Needs::Build)?;
    dist_with(crate::util::has_flag(args, "--wasm-opt")).map(|_| ())
}

/// [`dist_with`] as `cargo xtask dist` does it (without `wasm-opt`, see [`crate::build`]).
pub fn dist() -> Result<PathBuf> {
    dist_with(false)
}

/// Builds the wasm (`wasm-opt -Oz` when `optimise_size` and binaryen is installed) and writes
/// `dist/` and the top-level loader; returns the `dist/` path.
pub fn dist_with(optimise_size: bool) -> Result<PathBuf> {
    let wasm = build::build_wasm(optimise_size)?;
    write_outputs(&wasm)
}

fn write_outputs(wasm: &WasmBuild) -> Result<PathBuf> {
    let root = repo_root();
    let dist = root.join("dist");
    step(&format!("writing {}", dist.display()));
    if dist.exists() {
        std::fs::remove_dir_all(&dist).with_context(|| format!("removing the old {}", dist.display()))?;
    }
    std::fs::create_dir_all(dist.join("www"))?;

    let template = read(&root.join("www/loader.js"))?;
    let loader_fetching = fill_loader(&template, wasm, false)?;
    let loader_inline = fill_loader(&template, wasm, true)?;

    for page in PAGES {
        let source = root.join(page);
        if source.exists() {
            let html = with_wasm_preload(&read(&source)?);
            write(&dist.join(page), html.as_bytes())?;
        } else if *page == "index.html" {
            bail!("{} is missing: the site has no start page", source.display());
        } else {
            eprintln!("warning: {} is missing; not in dist/", source.display());
        }
    }
    for entry in std::fs::read_dir(root.join("www"))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if path.is_file() && name != "loader.js" {
            copy(&path, &dist.join("www").join(&name))?;
        }
    }
    write(&dist.join(LOADER_FILE_NAME), loader_fetching.as_bytes())?;
    write(&dist.join(Role::Page.wasm_file_name()), &wasm.page.wasm)?;
    write(&dist.join(Role::Worker.wasm_file_name()), &wasm.worker.wasm)?;

    let index = read(&root.join("index.html"))?;
    let css = read(&root.join(CSS_PATH)).unwrap_or_default();
    let single = single_file(&index, &css, &loader_inline).context("building the single-file viewer")?;
    write(&dist.join(SINGLE_FILE_NAME), single.as_bytes())?;

    write(&root.join(LOADER_FILE_NAME), loader_inline.as_bytes())?;

    eprintln!(
        "dist/ ready: {} + {} ({} bytes, {} gzipped) + {} ({} bytes, {} gzipped); single file {} ({} bytes, {} gzipped)",
        LOADER_FILE_NAME,
        Role::Page.wasm_file_name(),
        wasm.page.wasm.len(),
        build::gzip_len(&wasm.page.wasm),
        Role::Worker.wasm_file_name(),
        wasm.worker.wasm.len(),
        build::gzip_len(&wasm.worker.wasm),
        SINGLE_FILE_NAME,
        single.len(),
        build::gzip_len(single.as_bytes())
    );
    eprintln!("the repository's index.html now works from file:// ({LOADER_FILE_NAME} has the wasm inline)");
    Ok(dist)
}

/// A hosted page with `<link rel=preload>`s of the two wasm files before the loader's `<script>`:
/// the browser fetches them while it parses the page, instead of after the deferred loader has
/// run. (The repository's own pages, opened from `file://`, have the
/// wasm inline and no preload.)
fn with_wasm_preload(html: &str) -> String {
    let Some(script) = find_tag(html, "script", |tag| tag.contains(LOADER_FILE_NAME)) else {
        return html.to_owned();
    };
    let links: String = Role::ALL
        .iter()
        .map(|role| {
            format!(
                "<link rel=\"preload\" href=\"{}\" as=\"fetch\" type=\"application/wasm\" crossorigin>\n",
                role.wasm_file_name()
            )
        })
        .collect();
    let mut out = html.to_owned();
    out.insert_str(script.start, &links);
    out
}

/// The loader template with its placeholders replaced by the two glues, the wasm file names and
/// (when `inline`) the two wasm modules as base64 (empty: the loader fetches the files).
fn fill_loader(template: &str, wasm: &WasmBuild, inline: bool) -> Result<String> {
    let base64 = |bytes: &[u8]| if inline { base64::engine::general_purpose::STANDARD.encode(bytes) } else { String::new() };
    let fills = [
        ("/*PAGE_GLUE*/\"\"", wasm.page.glue_js.clone()),
        ("/*WORKER_GLUE*/\"\"", wasm.worker.glue_js.clone()),
        ("/*PAGE_WASM_FILE*/\"\"", Role::Page.wasm_file_name().to_owned()),
        ("/*WORKER_WASM_FILE*/\"\"", Role::Worker.wasm_file_name().to_owned()),
        ("/*PAGE_WASM_BASE64*/\"\"", base64(&wasm.page.wasm)),
        ("/*WORKER_WASM_BASE64*/\"\"", base64(&wasm.worker.wasm)),
    ];
    let mut out = template.to_owned();
    for (placeholder, value) in fills {
        if out.matches(placeholder).count() != 1 {
            bail!("www/loader.js must contain {placeholder} exactly once");
        }
        out = out.replacen(placeholder, &js_string(&value), 1);
    }
    Ok(out)
}

/// A JavaScript string literal for `text`, safe inside an HTML `<script>` element (no `<`).
fn js_string(text: &str) -> String {
    let json = serde_json::Value::String(text.to_owned()).to_string();
    json.replace('<', "\\u003c")
}

/// The self-contained page: `index` with the stylesheet and the loader inline and its CSP
/// rewritten to allow exactly those inline elements (sha256 hashes).
fn single_file(index: &str, css: &str, loader: &str) -> Result<String> {
    if loader.to_ascii_lowercase().contains("</script") {
        bail!("the loader contains `</script`, it cannot be inlined");
    }
    let mut html = index.to_owned();
    let link = find_tag(&html, "link", |tag| tag.contains(CSS_PATH))
        .with_context(|| format!("index.html has no <link> to {CSS_PATH}"))?;
    let style = format!("<style>{}</style>", css.replace("</style", "<\\/style"));
    html.replace_range(link, &style);
    let script = find_element(&html, "script", |tag| tag.contains(LOADER_FILE_NAME))
        .with_context(|| format!("index.html has no <script src=\"{LOADER_FILE_NAME}\">"))?;
    html.replace_range(script, &format!("<script>{loader}</script>"));

    let mut script_hashes = Vec::new();
    let mut style_hashes = Vec::new();
    for (name, hashes) in [("script", &mut script_hashes), ("style", &mut style_hashes)] {
        for body in inline_bodies(&html, name) {
            hashes.push(format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body.as_bytes()))));
        }
    }
    let meta = find_tag(&html, "meta", |tag| tag.to_ascii_lowercase().contains("content-security-policy"));
    let old_policy = match &meta {
        Some(range) => attribute(&html[range.clone()], "content").unwrap_or_default(),
        None => String::new(),
    };
    let policy = single_file_policy(&old_policy, &script_hashes, &style_hashes);
    let new_meta = format!("<meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">");
    match meta {
        Some(range) => html.replace_range(range, &new_meta),
        None => {
            let head = find_tag(&html, "head", |_| true).context("index.html has no <head>")?;
            html.insert_str(head.end, &new_meta);
        }
    }
    Ok(html)
}

/// The CSP of the single file: the page's own policy with `script-src` reduced to the hashes of
/// the inline scripts plus `blob:` (glue and worker) and `'wasm-unsafe-eval'`, and the inline
/// stylesheet allowed by hash unless `style-src` already allows inline styles.
fn single_file_policy(old: &str, script_hashes: &[String], style_hashes: &[String]) -> String {
    let mut directives: Vec<(String, Vec<String>)> = old
        .split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace().map(str::to_owned);
            words.next().map(|name| (name.to_ascii_lowercase(), words.collect()))
        })
        .collect();
    let mut script_src = script_hashes.to_vec();
    script_src.extend(["blob:".to_owned(), "'wasm-unsafe-eval'".to_owned()]);
    match directives.iter_mut().find(|(name, _)| name == "script-src") {
        Some((_, values)) => *values = script_src,
        None => directives.push(("script-src".to_owned(), script_src)),
    }
    if !directives.iter().any(|(name, _)| name == "worker-src") {
        directives.push(("worker-src".to_owned(), vec!["blob:".to_owned()]));
    }
    match directives.iter_mut().find(|(name, _)| name == "style-src") {
        Some((_, values)) => {
            if !values.iter().any(|v| v == "'unsafe-inline'") {
                values.extend(style_hashes.iter().cloned());
            }
        }
        None => directives.push(("style-src".to_owned(), style_hashes.to_vec())),
    }
    directives
        .iter()
        .map(|(name, values)| {
            let mut d = name.clone();
            for v in values {
                d.push(' ');
                d.push_str(v);
            }
            d
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Byte range of the first start tag `<name …>` whose text satisfies `pred`.
fn find_tag(html: &str, name: &str, pred: impl Fn(&str) -> bool) -> Option<std::ops::Range<usize>> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&open).map(|p| p + from) {
        let after = lower.as_bytes().get(pos + open.len()).copied().unwrap_or(b' ');
        let end = lower[pos..].find('>').map(|p| pos + p + 1)?;
        if (after.is_ascii_whitespace() || after == b'>' || after == b'/') && pred(&html[pos..end]) {
            return Some(pos..end);
        }
        from = end;
    }
    None
}

/// Byte range of the first element `<name …>…</name>` whose start tag satisfies `pred`.
fn find_element(html: &str, name: &str, pred: impl Fn(&str) -> bool) -> Option<std::ops::Range<usize>> {
    let start = find_tag(html, name, pred)?;
    let close = format!("</{name}>");
    let end = html.to_ascii_lowercase()[start.end..].find(&close)? + start.end + close.len();
    Some(start.start..end)
}

/// The contents of every `<name>` element without a `src` attribute (inline scripts/styles).
fn inline_bodies<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let mut bodies = Vec::new();
    let mut from = 0;
    while let Some(tag) = find_tag(&html[from..], name, |t| attribute(t, "src").is_none()) {
        let tag_end = from + tag.end;
        let close = format!("</{name}");
        let Some(body_len) = html[tag_end..].to_ascii_lowercase().find(&close) else { break };
        bodies.push(&html[tag_end..tag_end + body_len]);
        from = tag_end + body_len;
    }
    bodies
}

/// The value of attribute `name` in start tag `tag` (quoted with `"` or `'`).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(name).map(|p| p + from) {
        let before = lower.as_bytes().get(pos.wrapping_sub(1)).copied().unwrap_or(b' ');
        let rest = lower[pos + name.len()..].trim_start();
        if before.is_ascii_whitespace() && rest.starts_with('=') {
            let value = tag[tag.len() - rest.len() + 1..].trim_start();
            let quote = value.chars().next()?;
            if quote == '"' || quote == '\'' {
                let inner = &value[1..];
                return inner.find(quote).map(|end| inner[..end].replace("&#39;", "'").replace("&quot;", "\""));
            }
        }
        from = pos + name.len();
    }
    None
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\n\
        <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; script-src 'self' file: blob: 'wasm-unsafe-eval'; style-src 'self' file:; worker-src blob:\">\n\
        <link rel=\"stylesheet\" href=\"www/viewer.css\"></head><body><div id=\"status\"></div>\n\
        <script src=\"mask-impact-viewer.js\" defer></script></body></html>";

    #[test]
    fn hosted_pages_preload_the_wasm() {
        let html = with_wasm_preload(INDEX);
        let page = html.find("<link rel=\"preload\" href=\"mask_impact_page.wasm\"").expect("page preload link");
        let worker = html.find("<link rel=\"preload\" href=\"mask_impact_worker.wasm\"").expect("worker preload link");
        let script = html.find("<script src=\"mask-impact-viewer.js\"").expect("script");
        assert!(page < script && worker < script);
        assert_eq!(with_wasm_preload("<p>no loader</p>"), "<p>no loader</p>");
    }

    #[test]
    fn single_file_inlines_and_hashes() {
        let loader = "console.log(1)";
        let html = single_file(INDEX, "body{color:red}", loader).expect("single file");
        assert!(html.contains("<style>body{color:red}</style>"));
        assert!(html.contains("<script>console.log(1)</script>"));
        assert!(!html.contains("mask-impact-viewer.js"));
        // sha256("console.log(1)") computed with `printf 'console.log(1)' | openssl sha256 -binary | base64`
        assert!(html.contains("script-src 'sha256-CihokcEcBW4atb/CW/XWsvWwbTjqwQlE9nj9ii5ww5M=' blob: 'wasm-unsafe-eval'"), "{html}");
        // sha256("body{color:red}")
        assert!(html.contains("style-src 'self' file: 'sha256-FcQqt3aNlV7AZnGV4zkQRVeCeJOxbMPnQSx258L803E='"), "{html}");
        assert_eq!(html.matches("Content-Security-Policy").count(), 1);
    }

    #[test]
    fn js_string_has_no_angle_brackets() {
        let s = js_string("a</script><!-- \"q\"\n");
        assert_eq!(s, "\"a\\u003c/script>\\u003c!-- \\\"q\\\"\\n\"");
    }

    #[test]
    fn attribute_values() {
        assert_eq!(attribute("<a href='x' data-href=\"y\">", "href").as_deref(), Some("x"));
        assert_eq!(attribute("<a data-href=\"y\">", "href"), None);
    }
}
