//! The page: UI, events, worker management, painting and `window.maskImpact`.

use std::cell::RefCell;

use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{
    Blob, CanvasRenderingContext2d, Document, DragEvent, ErrorEvent, Event, File, HtmlCanvasElement,
    HtmlElement, HtmlImageElement, HtmlInputElement, HtmlSelectElement, ImageData, KeyboardEvent,
    MessageEvent, MouseEvent, WheelEvent, Window, Worker,
};

use super::dom::{self, append, attrs, el, human_bytes, human_ms, on, on_active, set_hidden, thousands};
use super::worker::{field, js_text, message, promise_with_resolvers};
use crate::cube::Cube;
use crate::render::{self, Raster};
use crate::view::{
    display_token, fit, hash_pairs, pan, zoom_about, Align, Label, Layout, Matrix, MatrixCache,
    MatrixKey, Probe, StepSelection, ViewKind, ViewState, Viewport,
};

/// The `requestAnimationFrame` callback, made once.
type FrameCallback = Closure<dyn FnMut(f64)>;

thread_local! {
    static APP: RefCell<Option<App>> = const { RefCell::new(None) };
    static FRAME: RefCell<Option<FrameCallback>> = const { RefCell::new(None) };
}

/// Run `f` on the page state (skipped when it is already borrowed, i.e. re-entered).
fn with_app<R>(f: impl FnOnce(&mut App) -> R) -> Option<R> {
    APP.with(|cell| match cell.try_borrow_mut() {
        Ok(mut guard) => guard.as_mut().map(f),
        Err(_) => None,
    })
}

/// Positions listed in the top-k panel.
const TOP_K: usize = 10;

/// Entry point of the page's instance: build the UI, start the decode worker, define
/// `window.maskImpact`, then load `?demo` / `?url=` if asked.
///
/// `module` is the worker's compiled `WebAssembly.Module` or a promise of it (posted to each
/// worker), `worker_url` the URL of the worker script.
#[cfg_attr(feature = "web-page", wasm_bindgen)]
pub fn start_page(module: JsValue, worker_url: String) -> Result<(), JsValue> {
    console_error_panic_hook::set_once();
    let win = web_sys::window().ok_or("no window")?;
    let doc = win.document().ok_or("no document")?;
    let ui = Ui::build(&doc)?;
    let app = App {
        win: win.clone(),
        doc: doc.clone(),
        ui,
        module: WorkerModule::Compiling,
        worker_url,
        worker: None,
        worker_gen: 0,
        failed_starts: 0,
        warm_asked: false,
        job: None,
        next_job_id: 1,
        data: None,
        state: ViewState::default(),
        cache: MatrixCache::new(),
        raster: Raster::default(),
        frame_pending: false,
        waiters: Vec::new(),
        mark_load_paint: false,
        mark_full_paint: false,
        before_preview: None,
        mark_view_paint: false,
        drag: None,
        overlay: None,
        overlay_url: None,
        overlay_canvas: None,
        topk_key: None,
        profile_key: String::new(),
        help_open: false,
        canvas_css: None,
    };
    APP.with(|cell| *cell.borrow_mut() = Some(app));
    FRAME.with(|f| {
        *f.borrow_mut() = Some(Closure::new(move |_t: f64| {
            // Skipped when a discrete change already painted (`paint_now`).
            with_app(|a| {
                if a.frame_pending {
                    a.frame();
                }
            });
        }));
    });
    define_api(&win)?;
    install_listeners(&win, &doc)?;
    // The worker's module, once compiled, is posted to each worker (called once each: they
    // live as long as the page).
    let compiled = Closure::<dyn FnMut(JsValue)>::new(move |module: JsValue| {
        with_app(|a| {
            a.module = WorkerModule::Ready(module);
            a.post_module();
        });
    });
    let failed = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
        with_app(|a| {
            a.module = WorkerModule::Failed(js_text(&e));
            a.post_module();
        });
    });
    let _ = js_sys::Promise::resolve(&module).then2(&compiled, &failed);
    compiled.forget();
    failed.forget();
    with_app(|a| {
        a.spawn_worker();
        a.set_status("empty", "No data loaded. Open a .parquet, .csv or .json result file (.csv.gz too), open or drop a folder of them, or open the demo.", None);
        a.sync_controls();
        let _ = a.ui.root.remove_attribute("aria-busy");
    });
    // ?demo, ?url=
    let search = win.location().search().unwrap_or_default();
    let params = web_sys::UrlSearchParams::new_with_str(&search)?;
    if let Some(url) = params.get("url").filter(|u| !u.is_empty()) {
        with_app(|a| a.open_url(&url, None));
    } else if params.has("demo") {
        with_app(|a| a.open_demo());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// UI elements

/// What kind of form control a hash key is bound to.
enum ControlKind {
    Select(HtmlSelectElement),
    Check(HtmlInputElement),
    Text(HtmlInputElement),
    Range(HtmlInputElement),
}

/// A form control bound to one hash key.
struct Control {
    key: &'static str,
    kind: ControlKind,
    /// The `<label>` around it (hidden when the control does not apply).
    wrap: HtmlElement,
}

struct Ui {
    root: HtmlElement,
    status: HtmlElement,
    status_text: HtmlElement,
    progress: HtmlElement,
    cancel: HtmlElement,
    file_input: HtmlInputElement,
    controls: Vec<Control>,
    controls_bar: HtmlElement,
    plot: HtmlElement,
    canvas: HtmlCanvasElement,
    ctx: CanvasRenderingContext2d,
    empty: HtmlElement,
    tooltip: HtmlElement,
    info: HtmlElement,
    grid_tools: HtmlElement,
    topk: HtmlElement,
    topk_list: HtmlElement,
    topk_caption: HtmlElement,
    profile: HtmlElement,
    profile_canvas: HtmlCanvasElement,
    help: HtmlElement,
    side: HtmlElement,
}

const STATIC_OPTIONS: [(&str, &[(&str, &str)]); 5] = [
    ("view", &[("layers", "Layers × positions"), ("grid", "Image grid"), ("heads", "Variants × positions")]),
    ("norm", &[("row", "Row maximum"), ("column", "Column maximum"), ("global", "Global maximum")]),
    ("scale", &[("linear", "Linear"), ("sqrt", "Square root"), ("log", "Logarithmic"), ("percentile", "Percentile (rank)")]),
    ("clip", &[("", "Maximum"), ("99.9", "99.9th percentile"), ("99", "99th percentile"), ("95", "95th percentile"), ("90", "90th percentile")]),
    ("cmap", &[("reds", "Reds (21 levels)"), ("viridis", "Viridis"), ("magma", "Magma"), ("diverging", "Diverging")]),
];

/// Keyboard shortcuts, for the help overlay.
const KEYS: [(&str, &str); 12] = [
    ("← / →", "previous / next layer"),
    ("↑ / ↓", "previous / next generation step"),
    ("M", "next metric"),
    ("S", "next scaling (linear, sqrt, log, percentile)"),
    ("V", "next variant"),
    ("G", "next view (layers, grid, heads)"),
    ("+ / −", "zoom in / out on positions"),
    ("0", "show all positions"),
    ("Wheel / drag", "zoom about the pointer / pan"),
    ("Double-click", "show all positions"),
    ("Click a cell", "pin its position (token profile)"),
    ("Esc", "close this help, unpin"),
];

impl Ui {
    fn build(doc: &Document) -> Result<Ui, JsValue> {
        let body = doc.body().ok_or("no body")?;
        let root: HtmlElement = match doc.get_element_by_id("app") {
            Some(e) => e.unchecked_into(),
            None => {
                let e = el(doc, "main", "", "");
                e.set_id("app");
                append(&body, &[&e]);
                e
            }
        };
        root.class_list().add_1("viewer")?;

        // Toolbar: open, demo, help.
        let toolbar = el(doc, "div", "toolbar", "");
        let open = el(doc, "button", "primary", "Open files…");
        attrs(&open, &[("type", "button"), ("title", "Open .parquet, .csv, .json files, gzip- or zstd-compressed too (several make one dataset), or an image for the grid view")]);
        let file_input: HtmlInputElement = el(doc, "input", "visually-hidden", "").unchecked_into();
        file_input.set_type("file");
        file_input.set_multiple(true);
        file_input.set_accept(".parquet,.csv,.json,.jsonl,.ndjson,.gz,.zst,image/*");
        attrs(&file_input, &[("aria-label", "Open result files"), ("tabindex", "-1")]);
        let folder = el(doc, "button", "", "Open folder…");
        attrs(&folder, &[("type", "button"), ("title", "Open a folder as one dataset: its .parquet, .csv, .json files at any depth; partition folders (generation_step=3) give their column")]);
        // The folder picker is an input of its own, never put in the page (the page has one
        // file input, for files).
        let folder_input: HtmlInputElement = el(doc, "input", "", "").unchecked_into();
        folder_input.set_type("file");
        folder_input.set_webkitdirectory(true);
        let demo = el(doc, "button", "", "Open demo");
        attrs(&demo, &[("type", "button"), ("title", "Load the built-in synthetic dataset")]);
        let help_btn = el(doc, "button", "icon", "?");
        attrs(&help_btn, &[("type", "button"), ("aria-label", "Keyboard shortcuts"), ("title", "Keyboard shortcuts (?)")]);
        let status: HtmlElement = match doc.get_element_by_id("status") {
            Some(e) => e.unchecked_into(),
            None => el(doc, "p", "", ""),
        };
        status.set_id("status");
        attrs(&status, &[("role", "status"), ("aria-live", "polite"), ("data-state", "empty")]);
        dom::clear(&status);
        let status_text = el(doc, "span", "status-text", "");
        let progress = el(doc, "progress", "", "");
        attrs(&progress, &[("max", "1"), ("aria-label", "Loading progress")]);
        progress.set_hidden(true);
        append(&status, &[&status_text, &progress]);
        let cancel = el(doc, "button", "", "Cancel");
        attrs(&cancel, &[("type", "button"), ("id", "cancel")]);
        cancel.set_hidden(true);
        let status_box = el(doc, "div", "status-box", "");
        append(&status_box, &[&status, &cancel]);
        append(&toolbar, &[&open, &folder, &demo, &file_input, &status_box, &help_btn]);

        // Controls.
        let controls_bar = el(doc, "div", "controls", "");
        attrs(&controls_bar, &[("role", "group"), ("aria-label", "View settings")]);
        let mut controls = Vec::new();
        let select = |key: &'static str, label: &str| -> Control {
            let wrap = el(doc, "label", "control", "");
            let caption = el(doc, "span", "", label);
            let s: HtmlSelectElement = el(doc, "select", "", "").unchecked_into();
            attrs(&s, &[("name", key), ("data-key", key)]);
            append(&wrap, &[&caption, &s]);
            Control { key, kind: ControlKind::Select(s), wrap }
        };
        let check = |key: &'static str, label: &str, title: &str| -> Control {
            let wrap = el(doc, "label", "control check", "");
            let i: HtmlInputElement = el(doc, "input", "", "").unchecked_into();
            i.set_type("checkbox");
            attrs(&i, &[("name", key), ("data-key", key)]);
            let caption = el(doc, "span", "", label);
            append(&wrap, &[&i, &caption]);
            if !title.is_empty() {
                attrs(&wrap, &[("title", title)]);
            }
            Control { key, kind: ControlKind::Check(i), wrap }
        };
        controls.push(select("prompt", "Prompt"));
        controls.push(select("view", "View"));
        controls.push(select("step", "Step"));
        controls.push(select("variant", "Variant"));
        controls.push(select("metric", "Metric"));
        controls.push(select("layer", "Layer"));
        {
            let wrap = el(doc, "label", "control", "");
            let caption = el(doc, "span", "", "Layers");
            let i: HtmlInputElement = el(doc, "input", "narrow", "").unchecked_into();
            i.set_type("text");
            attrs(&i, &[("name", "layers"), ("data-key", "layers"), ("placeholder", "all"), ("title", "Layer filter, e.g. 10-35 (empty = all)"), ("spellcheck", "false"), ("autocomplete", "off")]);
            append(&wrap, &[&caption, &i]);
            controls.push(Control { key: "layers", kind: ControlKind::Text(i), wrap });
        }
        controls.push(select("norm", "Colour relative to"));
        controls.push(select("clip", "Scale top"));
        controls.push(select("scale", "Scaling"));
        controls.push(select("cmap", "Colours"));
        controls.push(check("exclude0", "Exclude position 0", "Leave position 0 (the attention sink; in the grid view the first image token) out of the scale"));
        controls.push(check("heatmap", "Heatmap", "Colour the cells"));
        controls.push(check("values", "Values", "Print the values in the cells when they fit"));
        controls.push(check("share", "Share of Full", "Show each variant relative to the Full value"));
        for c in &controls {
            append(&controls_bar, &[&c.wrap]);
        }

        // Workspace: plot + side panel.
        let workspace = el(doc, "div", "workspace", "");
        let plot = el(doc, "section", "plot", "");
        attrs(&plot, &[("aria-label", "Heatmap")]);
        let canvas: HtmlCanvasElement = el(doc, "canvas", "", "").unchecked_into();
        attrs(&canvas, &[("tabindex", "0"), ("role", "img"), ("aria-label", "Heatmap of the selected metric; hover a cell for its value, click to pin its position")]);
        let ctx: CanvasRenderingContext2d = canvas
            .get_context("2d")?
            .ok_or("no 2d canvas context")?
            .unchecked_into();
        let empty = el(doc, "div", "empty", "");
        let empty_title = el(doc, "p", "empty-title", "Drop result files or a folder here");
        let empty_text = el(doc, "p", "", "Parquet, CSV or JSON from a mask-impact experiment; several files, or a folder of them, make one dataset. Nothing leaves your computer.");
        append(&empty, &[&empty_title, &empty_text]);
        let tooltip = el(doc, "div", "tooltip", "");
        attrs(&tooltip, &[("role", "tooltip"), ("id", "cell-tooltip")]);
        tooltip.set_hidden(true);
        append(&plot, &[&canvas, &empty, &tooltip]);

        let side = el(doc, "aside", "side", "");
        attrs(&side, &[("aria-label", "Details")]);
        let info = el(doc, "section", "panel info", "");
        let grid_tools = el(doc, "section", "panel grid-tools", "");
        {
            let h = el(doc, "h2", "", "Image overlay");
            let row = el(doc, "div", "button-row", "");
            let load = el(doc, "button", "", "Load image…");
            attrs(&load, &[("type", "button"), ("data-action", "image")]);
            let clear = el(doc, "button", "", "Remove image");
            attrs(&clear, &[("type", "button"), ("data-action", "clear-image")]);
            append(&row, &[&load, &clear]);
            append(&grid_tools, &[&h, &row]);
            let wrap = el(doc, "label", "control", "");
            let caption = el(doc, "span", "", "Cell opacity");
            let r: HtmlInputElement = el(doc, "input", "", "").unchecked_into();
            r.set_type("range");
            attrs(&r, &[("min", "0"), ("max", "1"), ("step", "0.05"), ("data-key", "opacity"), ("name", "opacity")]);
            append(&wrap, &[&caption, &r]);
            append(&grid_tools, &[&wrap]);
            controls.push(Control { key: "opacity", kind: ControlKind::Range(r), wrap });
            let c = check("gridlines", "Grid lines", "Draw lines between the grid cells");
            append(&grid_tools, &[&c.wrap]);
            controls.push(c);
        }
        let topk = el(doc, "section", "panel topk", "");
        let topk_h = el(doc, "h2", "", "Largest positions");
        let topk_caption = el(doc, "p", "caption", "");
        let topk_list = el(doc, "ol", "", "");
        append(&topk, &[&topk_h, &topk_caption, &topk_list]);
        let profile = el(doc, "section", "panel profile", "");
        let profile_h = el(doc, "h2", "", "Token profile");
        let profile_canvas: HtmlCanvasElement = el(doc, "canvas", "", "").unchecked_into();
        attrs(&profile_canvas, &[("role", "img"), ("aria-label", "Value of the pinned position across layers")]);
        let unpin = el(doc, "button", "", "Unpin");
        attrs(&unpin, &[("type", "button"), ("data-action", "unpin")]);
        append(&profile, &[&profile_h, &profile_canvas, &unpin]);
        append(&side, &[&info, &grid_tools, &topk, &profile]);
        append(&workspace, &[&plot, &side]);

        // Help overlay.
        let help = el(doc, "div", "help", "");
        attrs(&help, &[("role", "dialog"), ("aria-modal", "true"), ("aria-labelledby", "help-title")]);
        help.set_hidden(true);
        {
            let card = el(doc, "div", "help-card", "");
            let h = el(doc, "h2", "", "Keyboard shortcuts");
            h.set_id("help-title");
            let dl = el(doc, "dl", "", "");
            for (k, what) in KEYS {
                let dt = el(doc, "dt", "", "");
                let kbd = el(doc, "kbd", "", k);
                append(&dt, &[&kbd]);
                let dd = el(doc, "dd", "", what);
                append(&dl, &[&dt, &dd]);
            }
            let note = el(doc, "p", "caption", "Keys work when no text field or list has the focus. The view lives in the address (#…): copy the link to share it.");
            let close = el(doc, "button", "", "Close");
            attrs(&close, &[("type", "button"), ("data-action", "close-help")]);
            append(&card, &[&h, &dl, &note, &close]);
            append(&help, &[&card]);
        }

        dom::clear(&root);
        append(&root, &[&toolbar, &controls_bar, &workspace, &help]);

        // Buttons.
        {
            let fi = file_input.clone();
            on::<Event>(&open, "click", move |_| fi.click());
            let picker = folder_input.clone();
            on::<Event>(&folder, "click", move |_| picker.click());
            let picker = folder_input.clone();
            on::<Event>(&folder_input, "change", move |_| {
                let files = file_list(picker.files());
                picker.set_value("");
                // (A cancelled dialog fires no change: the input is emptied after each pick.)
                match files_of_picked_folder(files) {
                    Ok(files) => with_app(|a| a.open_named_files(files)),
                    Err(msg) => with_app(|a| a.show_error(&msg)),
                };
            });
        }
        on::<Event>(&demo, "click", move |_| {
            with_app(|a| a.open_demo());
        });
        on::<Event>(&cancel, "click", move |_| {
            with_app(|a| a.cancel_job());
        });
        on::<Event>(&help_btn, "click", move |_| {
            with_app(|a| a.toggle_help(None));
        });

        let ui = Ui {
            root,
            status,
            status_text,
            progress,
            cancel,
            file_input,
            controls,
            controls_bar,
            plot,
            canvas,
            ctx,
            empty,
            tooltip,
            info,
            grid_tools,
            topk,
            topk_list,
            topk_caption,
            profile,
            profile_canvas,
            help,
            side,
        };
        for (key, options) in STATIC_OPTIONS {
            if let Some(ControlKind::Select(s)) = ui.control(key).map(|c| &c.kind) {
                fill_select(doc, s, options.iter().map(|(v, t)| (v.to_string(), t.to_string())));
            }
        }
        Ok(ui)
    }

    fn control(&self, key: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.key == key)
    }
}

/// Replace the options of a select.
fn fill_select(doc: &Document, s: &HtmlSelectElement, options: impl Iterator<Item = (String, String)>) {
    dom::clear(s);
    for (value, text) in options {
        let o = el(doc, "option", "", &text);
        let _ = o.set_attribute("value", &value);
        let _ = s.append_child(&o);
    }
}

// ---------------------------------------------------------------------------------------------
// Application state

struct WorkerSlot {
    worker: Worker,
    /// The worker's module was posted to it.
    module_sent: bool,
    ready: bool,
}

/// The decode worker's compiled wasm module, which the loader may still be compiling when the
/// page starts.
enum WorkerModule {
    Compiling,
    Ready(JsValue),
    Failed(String),
}

/// After a load, the used worker is ended at once (returning its memory) and a fresh one is
/// started this much later, so that its start does not compete with the first view changes
/// (a file opened before then starts one at once).
const WORKER_RESPAWN_DELAY_MS: i32 = 1000;

/// A load in progress.
struct Job {
    id: u32,
    /// File names (for messages).
    names: Vec<String>,
    /// The request, until it has been posted to the worker (`None` while a URL is fetched).
    request: Option<JsValue>,
    sent: bool,
    started_ms: f64,
    /// `openUrl` promises to settle.
    resolvers: Vec<(Function, Function)>,
}

struct Loaded {
    cube: Cube,
    load_ms: f64,
    /// Per metric, its infinite values ([`Cube::infinite_values`]), counted once the whole
    /// file is in and painted (empty until then: the count is kept off open → painted).
    infinite: Vec<u64>,
}

struct Drag {
    start_x: f64,
    start_zoom: Option<crate::view::InclusiveRange>,
    moved: bool,
}

struct App {
    win: Window,
    doc: Document,
    ui: Ui,
    module: WorkerModule,
    worker_url: String,
    worker: Option<WorkerSlot>,
    worker_gen: u32,
    /// Workers that died before saying "ready", in a row.
    failed_starts: u32,
    /// The warm-up (see `src/web/warmup.rs`) was asked of a worker: once per page.
    warm_asked: bool,
    job: Option<Job>,
    next_job_id: u32,
    data: Option<Loaded>,
    state: ViewState,
    cache: MatrixCache,
    raster: Raster,
    frame_pending: bool,
    /// `openUrl` promises resolved at the next paint.
    waiters: Vec<(Function, Function)>,
    mark_load_paint: bool,
    /// Mark `mi-full-painted` (and resolve `openUrl` waiters) at the next paint: all data shown.
    mark_full_paint: bool,
    /// The data and view from before an early view (`preview`) of a load replaced them: put
    /// back if the load then fails or is cancelled.
    before_preview: Option<(Option<Loaded>, ViewState)>,
    mark_view_paint: bool,
    drag: Option<Drag>,
    overlay: Option<HtmlImageElement>,
    overlay_url: Option<String>,
    overlay_canvas: Option<HtmlCanvasElement>,
    topk_key: Option<MatrixKey>,
    profile_key: String,
    help_open: bool,
    /// The canvas's CSS size, measured once per resize (the `ResizeObserver` clears it):
    /// reading the layout in every frame forced a synchronous reflow after each DOM update.
    canvas_css: Option<(f64, f64)>,
}

/// The cube a worker message carries (`cube` and `values`, see [`Cube::to_transfer`]).
fn cube_in(data: &JsValue) -> Result<Cube, crate::cube::CubeError> {
    let bytes = Uint8Array::new(&field(data, "cube")).to_vec();
    // Each metric's values are copied once, straight into a vector of the right size.
    let values: Vec<Vec<f32>> = Array::from(&field(data, "values"))
        .iter()
        .map(|b| js_sys::Float32Array::new(&b).to_vec())
        .collect();
    Cube::from_transfer(&bytes, values)
}

fn now_ms(win: &Window) -> f64 {
    win.performance().map_or_else(js_sys::Date::now, |p| p.now())
}

impl App {
    // ----- performance marks

    fn mark(&self, name: &str) {
        if let Some(p) = self.win.performance() {
            p.clear_marks_with_mark_name(name);
            let _ = p.mark(name);
        }
    }

    fn measure(&self, name: &str, start: &str, end: &str) {
        if let Some(p) = self.win.performance() {
            p.clear_measures_with_measure_name(name);
            let _ = p.measure_with_start_mark_and_end_mark(name, start, end);
        }
    }

    // ----- status

    fn set_status(&self, state: &str, text: &str, progress: Option<f64>) {
        let _ = self.ui.status.set_attribute("data-state", state);
        self.ui.status_text.set_text_content(Some(text));
        match progress {
            Some(p) => {
                let _ = self.ui.progress.set_attribute("value", &format!("{:.4}", p.clamp(0.0, 1.0)));
                set_hidden(&self.ui.progress, false);
            }
            None => {
                // Indeterminate while loading without a fraction.
                let _ = self.ui.progress.remove_attribute("value");
                set_hidden(&self.ui.progress, state != "loading");
            }
        }
        set_hidden(&self.ui.cancel, state != "loading");
        if state == "loading" {
            let _ = self.ui.root.set_attribute("aria-busy", "true");
        } else {
            let _ = self.ui.root.remove_attribute("aria-busy");
        }
    }

    fn ready_text(&self) -> String {
        match &self.data {
            None => "No data loaded.".to_string(),
            Some(d) => {
                let c = &d.cube;
                let positions: usize = c.prompts.iter().map(|p| p.n_positions()).max().unwrap_or(0);
                let count = |n: u64, one: &str| format!("{} {one}{}", thousands(n), if n == 1 { "" } else { "s" });
                format!(
                    "{} · {} · {} × {} × {} × {} · loaded in {}",
                    files_label(&c.sources),
                    count(c.rows_read, "row"),
                    count(c.steps.len() as u64, "step"),
                    count(c.layers.len() as u64, "layer"),
                    count(positions as u64, "position"),
                    count(c.variants.len() as u64, "variant"),
                    human_ms(d.load_ms)
                )
            }
        }
    }

    // ----- worker

    fn spawn_worker(&mut self) {
        self.worker_gen += 1;
        let gen = self.worker_gen;
        let worker = match Worker::new(&self.worker_url) {
            Ok(w) => w,
            Err(e) => {
                self.worker = None;
                self.set_status("error", &format!("Cannot start the decoder (Web Worker): {}", js_text(&e)), None);
                return;
            }
        };
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let data = e.data();
            with_app(|a| a.on_worker_message(gen, data));
        });
        worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        onmessage.forget();
        let onerror = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
            e.prevent_default();
            let text = e
                .dyn_ref::<ErrorEvent>()
                .map(|e| e.message())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "the worker stopped".to_string());
            with_app(|a| a.on_worker_crash(gen, &text));
        });
        worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
        onerror.forget();
        let onmessageerror = Closure::<dyn FnMut(Event)>::new(move |_e: Event| {
            with_app(|a| a.on_worker_crash(gen, "a message could not be read"));
        });
        worker.set_onmessageerror(Some(onmessageerror.as_ref().unchecked_ref()));
        onmessageerror.forget();
        self.worker = Some(WorkerSlot { worker, module_sent: false, ready: false });
        self.post_module();
    }

    /// Post the worker's module to the current worker once it is compiled (the worker's script
    /// waits for it as its first message).
    fn post_module(&mut self) {
        let Some(slot) = &mut self.worker else { return };
        if slot.module_sent {
            return;
        }
        let error = match &self.module {
            WorkerModule::Compiling => return,
            WorkerModule::Ready(module) => match slot.worker.post_message(module) {
                Ok(()) => {
                    slot.module_sent = true;
                    return;
                }
                Err(e) => js_text(&e),
            },
            WorkerModule::Failed(e) => e.clone(),
        };
        slot.module_sent = true;
        self.set_status("error", &format!("Cannot start the decoder: {error}"), None);
    }

    /// End the worker after a load (returning its memory) and start a fresh one a little
    /// later ([`WORKER_RESPAWN_DELAY_MS`]).
    fn retire_worker(&mut self) {
        if let Some(slot) = self.worker.take() {
            slot.worker.terminate();
        }
        let respawn = Closure::once_into_js(move || {
            with_app(|a| {
                if a.worker.is_none() {
                    a.failed_starts = 0;
                    a.spawn_worker();
                }
            });
        });
        let _ = self
            .win
            .set_timeout_with_callback_and_timeout_and_arguments_0(respawn.unchecked_ref(), WORKER_RESPAWN_DELAY_MS);
    }

    /// Terminate the worker (cancel, failure, crash) and start a fresh one at once (after a
    /// load that succeeded: [`retire_worker`](Self::retire_worker)).
    fn recycle_worker(&mut self) {
        if let Some(slot) = self.worker.take() {
            slot.worker.terminate();
        }
        self.spawn_worker();
    }

    fn send_pending(&mut self) {
        let (Some(slot), Some(job)) = (&self.worker, &mut self.job) else {
            return;
        };
        if !slot.ready || job.sent {
            return;
        }
        if let Some(req) = &job.request {
            if let Err(e) = slot.worker.post_message(req) {
                let msg = format!("{}: cannot hand the file to the decoder: {}", files_label(&job.names), js_text(&e));
                self.fail_load(&msg);
                return;
            }
            job.sent = true;
        }
    }

    fn on_worker_message(&mut self, gen: u32, data: JsValue) {
        if gen != self.worker_gen {
            return;
        }
        let kind = field(&data, "type").as_string().unwrap_or_default();
        let id = field(&data, "id").as_f64().map(|v| v as u32);
        let current = self.job.as_ref().map(|j| j.id);
        match kind.as_str() {
            "ready" => {
                self.failed_starts = 0;
                if let Some(slot) = &mut self.worker {
                    slot.ready = true;
                    // The first worker with nothing to do warms the decoders up.
                    if !self.warm_asked && self.job.is_none() {
                        self.warm_asked = true;
                        let _ = slot.worker.post_message(&message(&[("type", "warm".into())]));
                        self.mark("mi-warm-start");
                    }
                }
                self.send_pending();
            }
            "warm" => {
                self.mark("mi-warm-view-start");
                self.warm_view(&data);
                self.mark("mi-warm-view-end");
                self.measure("mi-warm-view", "mi-warm-view-start", "mi-warm-view-end");
            }
            "warm-done" => self.mark("mi-warm-end"),
            "progress" if id.is_some() && id == current => self.show_progress(&data),
            "read" if id.is_some() && id == current => self.serve_read(&data),
            "preview" if id.is_some() && id == current => {
                web_sys::console::debug_2(&"mask-impact: early view, worker timings (ms)".into(), &field(&data, "timings"));
                self.preview_load(&data)
            }
            "done" if id.is_some() && id == current => {
                let timings = field(&data, "timings");
                if !timings.is_undefined() {
                    web_sys::console::debug_2(&"mask-impact: decode worker timings (ms)".into(), &timings);
                }
                self.finish_load(&data);
            }
            "error" if id.is_some() && id == current => {
                let msg = field(&data, "message").as_string().unwrap_or_else(|| "the file could not be read".to_string());
                self.fail_load(&msg);
            }
            _ => {}
        }
    }

    fn on_worker_crash(&mut self, gen: u32, text: &str) {
        if gen != self.worker_gen {
            return;
        }
        match &self.job {
            Some(job) if job.sent => {
                let msg = format!("{}: the decoder crashed ({text})", files_label(&job.names));
                self.fail_load(&msg);
            }
            _ => {
                // The worker died before taking a job (e.g. it could not start): retry a few
                // times, then say so instead of looping.
                self.failed_starts += 1;
                if self.failed_starts >= 3 {
                    if let Some(slot) = self.worker.take() {
                        slot.worker.terminate();
                    }
                    let msg = format!("The decoder (Web Worker) cannot start: {text}");
                    for (_, reject) in self.job.take().iter().flat_map(|j| j.resolvers.iter()) {
                        let _ = reject.call1(&JsValue::UNDEFINED, &msg.clone().into());
                    }
                    self.set_status("error", &msg, None);
                    return;
                }
                web_sys::console::error_1(&format!("mask-impact: the decode worker stopped ({text}); starting a new one").into());
                self.recycle_worker();
            }
        }
    }

    /// Read a byte range of one of the job's files for the worker (`read` → `data`, the bytes
    /// transferred). The worker reads CSV and JSON through the page: its own `Blob` reads are
    /// copied into it on its own thread, between its decoding, while the page's thread is free
    /// during a load (a 1.2 GB JSON: about 1.5 s less).
    fn serve_read(&self, data: &JsValue) {
        let (Some(job), Some(slot)) = (&self.job, &self.worker) else { return };
        let id = field(data, "id");
        let file = field(data, "file");
        let start = field(data, "start");
        let (Some(s), Some(e)) = (start.as_f64(), field(data, "end").as_f64()) else { return };
        let blob = job
            .request
            .as_ref()
            .map(|r| field(r, "blobs"))
            .and_then(|b| b.dyn_into::<Array>().ok())
            .zip(file.as_f64())
            .and_then(|(blobs, i)| blobs.get(i as u32).dyn_into::<Blob>().ok());
        let worker = slot.worker.clone();
        let reply = move |result: Result<JsValue, String>| {
            let mut fields = vec![("type", JsValue::from_str("data")), ("id", id), ("file", file), ("start", start)];
            let transfer = Array::new();
            match result {
                Ok(buffer) => {
                    transfer.push(&buffer);
                    fields.push(("buffer", buffer));
                }
                Err(text) => fields.push(("error", text.into())),
            }
            // A worker ended meanwhile (cancel) takes no more messages: nothing to do then.
            let _ = worker.post_message_with_transfer(&message(&fields), &transfer);
        };
        let Some(blob) = blob else {
            reply(Err("the page no longer holds this file".into()));
            return;
        };
        let read = blob.slice_with_f64_and_f64(s, e).map(|slice| wasm_bindgen_futures::JsFuture::from(slice.array_buffer()));
        wasm_bindgen_futures::spawn_local(async move {
            let result = match read {
                Ok(read) => read.await.map_err(|e| js_text(&e)),
                Err(e) => Err(js_text(&e)),
            };
            reply(result);
        });
    }

    fn show_progress(&self, data: &JsValue) {
        let Some(job) = &self.job else { return };
        let read = field(data, "bytesRead").as_f64().unwrap_or(0.0);
        let total = field(data, "bytesTotal").as_f64().unwrap_or(0.0);
        let rows = field(data, "rows").as_f64().unwrap_or(0.0);
        let file = field(data, "file").as_string().unwrap_or_default();
        let elapsed_s = ((now_ms(&self.win) - job.started_ms) / 1000.0).max(1e-3);
        let frac = if total > 0.0 { read / total } else { 0.0 };
        let text = format!(
            "Reading {file}: {:.0}% · {} of {} · {} rows · {}/s",
            frac * 100.0,
            human_bytes(read),
            human_bytes(total),
            thousands(rows as u64),
            human_bytes(read / elapsed_s)
        );
        self.set_status("loading", &text, Some(frac));
    }

    // ----- loading

    fn new_job(&mut self, names: Vec<String>, request: Option<JsValue>, resolvers: Vec<(Function, Function)>) -> u32 {
        if self.job.is_some() {
            self.cancel_job();
        }
        if self.worker.is_none() {
            self.failed_starts = 0;
            self.spawn_worker();
        }
        let id = self.next_job_id;
        self.next_job_id += 1;
        let request = request.inspect(|r| {
            let _ = Reflect::set(r, &"id".into(), &id.into());
        });
        self.job = Some(Job { id, names, request, sent: false, started_ms: now_ms(&self.win), resolvers });
        id
    }

    fn open_files(&mut self, files: Vec<File>) {
        self.open_named_files(files.into_iter().map(|f| (f.name(), f)).collect());
    }

    /// Opens `files`, each named by its path (a dropped folder's files: the partition folders
    /// of a dataset in their path give their rows a step; see `cube::hive_partitions`).
    fn open_named_files(&mut self, files: Vec<NamedFile>) {
        let (images, data): (Vec<NamedFile>, Vec<NamedFile>) = files.into_iter().partition(|(_, f)| is_image(f));
        if let Some((_, img)) = images.first() {
            self.load_overlay(img);
        }
        if data.is_empty() {
            return;
        }
        self.mark("mi-load-start");
        let names: Vec<String> = data.iter().map(|(n, _)| n.clone()).collect();
        let blobs = Array::new();
        let name_arr = Array::new();
        for (name, f) in &data {
            blobs.push(f);
            name_arr.push(&name.into());
        }
        let req = self.open_request(blobs, name_arr);
        let total: f64 = data.iter().map(|(_, f)| f.size()).sum();
        let shown = files_label(&names);
        self.new_job(names, Some(req), Vec::new());
        self.set_status("loading", &format!("Opening {shown} ({})…", human_bytes(total)), None);
        self.send_pending();
    }

    /// An error that ends no load (the previous data and view stay).
    fn show_error(&mut self, msg: &str) {
        let text = if self.data.is_some() { format!("{msg} (the previous data is still shown)") } else { msg.to_string() };
        self.set_status("error", &text, None);
    }

    fn open_demo(&mut self) {
        self.mark("mi-load-start");
        let req = message(&[("type", "demo".into())]);
        self.new_job(vec!["demo".to_string()], Some(req), Vec::new());
        self.set_status("loading", "Generating the demo dataset…", None);
        self.send_pending();
    }

    /// Load a file from a URL (relative to the page). `resolvers` settle the `openUrl` promise.
    fn open_url(&mut self, url: &str, resolvers: Option<(Function, Function)>) {
        self.mark("mi-load-start");
        let base = self.doc.base_uri().ok().flatten().unwrap_or_default();
        let absolute = match web_sys::Url::new_with_base(url, &base) {
            Ok(u) => u,
            Err(e) => {
                let msg = format!("{url}: not a valid address ({})", js_text(&e));
                self.set_status("error", &msg, None);
                if let Some((_, reject)) = resolvers {
                    let _ = reject.call1(&JsValue::UNDEFINED, &msg.into());
                }
                return;
            }
        };
        let href = absolute.href();
        let path = absolute.pathname();
        let name = path.rsplit('/').find(|s| !s.is_empty()).map(|s| js_sys::decode_uri_component(s).map(String::from).unwrap_or_else(|_| s.to_string())).unwrap_or_else(|| href.clone());
        let id = self.new_job(vec![name.clone()], None, resolvers.into_iter().collect());
        self.set_status("loading", &format!("Fetching {href}…"), None);
        fetch_blob(&self.win, &href, id, name);
    }

    /// Make the decode worker panic during a load (`maskImpact.crashDecoder()`, for the tests
    /// of crash handling): the load fails as one whose decoder crashed.
    fn crash_decoder(&mut self, resolvers: Option<(Function, Function)>) {
        let name = "crash test".to_string();
        let request = message(&[("type", "panic".into())]);
        self.new_job(vec![name.clone()], Some(request), resolvers.into_iter().collect());
        self.set_status("loading", &format!("Reading {name}…"), None);
        self.send_pending();
    }

    fn url_fetched(&mut self, id: u32, name: &str, blob: JsValue) {
        if self.job.as_ref().is_none_or(|j| j.id != id) {
            return;
        }
        let Ok(blob) = blob.dyn_into::<Blob>() else {
            let msg = format!("{name}: the download gave no data");
            self.fail_load(&msg);
            return;
        };
        let size = blob.size();
        let req = self.open_request(Array::of1(&blob), Array::of1(&name.into()));
        let _ = Reflect::set(&req, &"id".into(), &id.into());
        let Some(job) = self.job.as_mut() else { return };
        job.request = Some(req);
        self.set_status("loading", &format!("Opening {name} ({})…", human_bytes(size)), None);
        self.send_pending();
    }

    /// The worker's `open` request for `blobs` named `names`, with what the view will show
    /// (the step it reads first, the hash its early view follows).
    fn open_request(&self, blobs: Array, names: Array) -> JsValue {
        message(&[
            ("type", "open".into()),
            ("blobs", blobs.into()),
            ("names", names.into()),
            ("step", self.hash_step()),
            ("hash", self.win.location().hash().unwrap_or_default().into()),
        ])
    }

    /// The step the location hash asks for, for the decoder to read first: a number, `"all"`,
    /// or undefined (none or not a number).
    fn hash_step(&self) -> JsValue {
        let hash = self.win.location().hash().unwrap_or_default();
        // Parsed by the view state's own rules (percent-decoding, `all`), without a cube: the
        // worker only needs to know which rows to read first.
        let mut s = ViewState::default();
        let given = hash_pairs(&hash)
            .filter(|(k, _)| k == "step")
            .last()
            .is_some_and(|(_, v)| s.apply("step", &v, None));
        match (given, s.step) {
            (false, _) => JsValue::UNDEFINED,
            (true, StepSelection::All) => "all".into(),
            (true, StepSelection::One(n)) => JsValue::from_f64(n as f64),
        }
    }

    fn cancel_job(&mut self) {
        let Some(job) = self.job.take() else { return };
        let msg = format!("{}: loading was cancelled", files_label(&job.names));
        for (_, reject) in &job.resolvers {
            let _ = reject.call1(&JsValue::UNDEFINED, &msg.clone().into());
        }
        self.recycle_worker();
        self.restore_before_preview();
        if self.data.is_some() {
            self.set_status("ready", &format!("Cancelled. {}", self.ready_text()), None);
        } else {
            self.set_status("empty", "Cancelled. No data loaded.", None);
        }
    }

    fn fail_load(&mut self, msg: &str) {
        let job = self.job.take();
        self.restore_before_preview();
        for (_, reject) in job.iter().flat_map(|j| j.resolvers.iter()) {
            let _ = reject.call1(&JsValue::UNDEFINED, &msg.into());
        }
        let text = if self.data.is_some() { format!("{msg} (the previous data is still shown)") } else { msg.to_string() };
        self.set_status("error", &text, None);
        self.recycle_worker();
    }

    /// The cube in a worker message, or the load fails with the reason.
    fn received_cube(&mut self, data: &JsValue) -> Option<Cube> {
        match cube_in(data) {
            Ok(c) => Some(c),
            Err(e) => {
                let names = self.job.as_ref().map(|j| files_label(&j.names)).unwrap_or_default();
                self.fail_load(&format!("{names}: {e}"));
                None
            }
        }
    }

    /// The page's part of the warm-up (see `src/web/warmup.rs`): the steps from a received cube
    /// to painted pixels (the cube's transfer, the view state, slicing, layout, paint, labels),
    /// on the worker's sample cube, out of sight; nothing shown or kept changes.
    fn warm_view(&mut self, data: &JsValue) {
        let Ok(cube) = cube_in(data) else { return };
        let state = ViewState::from_hash("", &cube);
        let mut cache = MatrixCache::new();
        let matrix = cache.get(&cube, &state);
        let vp = self.viewport();
        let layout = Layout::compute(vp, &cube, matrix, &state);
        let mut raster = Raster::default();
        render::paint(&cube, matrix, &layout, &state, &mut raster);
        // The pixels and labels go to a canvas of their own, never shown (the first text drawn
        // with a font costs the browser its font set-up).
        let canvas: HtmlCanvasElement = el(&self.doc, "canvas", "", "").unchecked_into();
        canvas.set_width(raster.width_px);
        canvas.set_height(raster.height_px);
        if let Some(ctx) = canvas.get_context("2d").ok().flatten() {
            let ctx: CanvasRenderingContext2d = ctx.unchecked_into();
            if let Ok(image) = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&raster.rgba), raster.width_px, raster.height_px) {
                let _ = ctx.put_image_data(&image, 0.0, 0.0);
            }
            let dpr = vp.device_pixel_ratio as f64;
            ctx.set_transform(dpr, 0.0, 0.0, dpr, 0.0, 0.0).ok();
            draw_labels(&ctx, &layout.labels(&cube, matrix, &state));
        }
    }

    /// Shows `cube` with the view the hash describes. An early view leaves the hash as it is:
    /// its cube holds only what that view shows, and a variant or metric the hash names but
    /// the cube lacks (the hash changed while the file was read) must reach the whole cube.
    fn install(&mut self, cube: Cube, load_ms: f64, early: bool) {
        let hash = self.win.location().hash().unwrap_or_default();
        self.state = ViewState::from_hash(&hash, &cube);
        self.cache.clear();
        self.topk_key = None;
        self.profile_key.clear();
        self.data = Some(Loaded { cube, load_ms, infinite: Vec::new() });
        self.fill_data_options();
        self.fill_info();
        self.sync_controls();
        if !early {
            self.write_hash();
        }
    }

    /// An early view: the rows read so far hold the step the view shows. The load goes on
    /// (status stays `loading`); the data from before is kept until it ends.
    fn preview_load(&mut self, data: &JsValue) {
        let Some(cube) = self.received_cube(data) else { return };
        let Some(started_ms) = self.job.as_ref().map(|j| j.started_ms) else { return };
        if self.before_preview.is_none() {
            self.before_preview = Some((self.data.take(), self.state.clone()));
        }
        self.mark("mi-preview-ready");
        let load_ms = now_ms(&self.win) - started_ms;
        self.install(cube, load_ms, true);
        self.mark_load_paint = true;
        set_hidden(&self.ui.empty, true);
        // Painted here, as a discrete view change is, not at the next animation frame.
        self.request_frame();
        self.paint_now();
    }

    /// Puts back the data and view an early view replaced (the load failed or was cancelled).
    fn restore_before_preview(&mut self) {
        let Some((data, state)) = self.before_preview.take() else { return };
        self.data = data;
        self.state = state;
        self.cache.clear();
        self.topk_key = None;
        self.profile_key.clear();
        self.mark_load_paint = false;
        if self.data.is_some() {
            self.fill_data_options();
            self.fill_info();
            self.sync_controls();
            self.write_hash();
        } else {
            set_hidden(&self.ui.empty, false);
        }
        self.request_frame();
    }

    fn finish_load(&mut self, data: &JsValue) {
        let Some(cube) = self.received_cube(data) else { return };
        let Some(job) = self.job.take() else { return };
        let previewed = self.before_preview.take().is_some();
        self.mark("mi-data-ready");
        let load_ms = now_ms(&self.win) - job.started_ms;
        self.install(cube, load_ms, false);
        self.waiters.extend(job.resolvers);
        if !previewed {
            self.mark_load_paint = true;
        }
        self.mark_full_paint = true;
        self.set_status("ready", &self.ready_text(), None);
        set_hidden(&self.ui.empty, true);
        self.retire_worker();
        self.request_frame();
        self.paint_now();
        if let Some(d) = self.data.as_mut() {
            d.infinite = d.cube.infinite_values();
            if d.infinite.iter().any(|&n| n > 0) {
                self.fill_info();
            }
        }
    }

    fn load_overlay(&mut self, file: &File) {
        if let Some(old) = self.overlay_url.take() {
            let _ = web_sys::Url::revoke_object_url(&old);
        }
        let Ok(url) = web_sys::Url::create_object_url_with_blob(file) else { return };
        let Ok(img) = HtmlImageElement::new() else { return };
        let name = file.name();
        let onload = Closure::once(move || {
            with_app(|a| a.request_frame());
        });
        img.set_onload(Some(onload.as_ref().unchecked_ref()));
        onload.forget();
        let onerror = Closure::once(move || {
            with_app(|a| {
                a.overlay = None;
                a.set_status("error", &format!("{name}: cannot read it as an image"), None);
                a.request_frame();
            });
        });
        img.set_onerror(Some(onerror.as_ref().unchecked_ref()));
        onerror.forget();
        img.set_src(&url);
        self.overlay = Some(img);
        self.overlay_url = Some(url);
        if self.data.is_some() && self.state.view != ViewKind::Grid {
            let mut s = self.state.clone();
            s.view = ViewKind::Grid;
            if s.opacity >= 1.0 {
                s.opacity = 0.6;
            }
            self.commit(s);
        } else {
            self.request_frame();
        }
    }

    // ----- state

    /// Make `s` the view state: validate, write the hash, sync the controls, repaint.
    fn commit(&mut self, s: ViewState) {
        let s = match &self.data {
            Some(d) => s.validated(&d.cube),
            None => s,
        };
        if s == self.state {
            return;
        }
        let prompt_changed = s.prompt != self.state.prompt;
        self.state = s;
        if prompt_changed {
            self.fill_info();
        }
        self.hide_tooltip();
        self.mark("mi-view-start");
        self.mark_view_paint = true;
        self.write_hash();
        self.sync_controls();
        self.request_frame();
    }

    fn write_hash(&self) {
        if self.data.is_none() {
            return;
        }
        let hash = format!("#{}", self.state.to_hash());
        if self.win.location().hash().unwrap_or_default() == hash {
            return;
        }
        if let Ok(history) = self.win.history() {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&hash));
        }
    }

    fn on_hash_change(&mut self) {
        let Some(d) = &self.data else { return };
        let hash = self.win.location().hash().unwrap_or_default();
        let s = ViewState::from_hash(&hash, &d.cube);
        self.commit(s);
        // Normalise what was typed.
        self.write_hash();
        self.paint_now();
    }

    /// A control changed.
    fn on_control(&mut self, key: &str) {
        let Some(c) = self.ui.control(key) else { return };
        let value = match &c.kind {
            ControlKind::Select(s) => s.value(),
            ControlKind::Check(i) => if i.checked() { "on" } else { "off" }.to_string(),
            ControlKind::Text(i) | ControlKind::Range(i) => i.value(),
        };
        let mut s = self.state.clone();
        let cube = self.data.as_ref().map(|d| &d.cube);
        let value = if key == "clip" && value.is_empty() { "none".to_string() } else { value };
        let ok = s.apply(key, &value, cube);
        if let ControlKind::Text(i) = &c.kind {
            if ok {
                let _ = i.remove_attribute("aria-invalid");
            } else {
                let _ = i.set_attribute("aria-invalid", "true");
            }
        }
        if ok {
            self.commit(s);
            self.paint_now();
        }
    }

    fn fill_data_options(&self) {
        let Some(d) = &self.data else { return };
        let c = &d.cube;
        let set = |key: &str, options: Vec<(String, String)>| {
            if let Some(ControlKind::Select(s)) = self.ui.control(key).map(|c| &c.kind) {
                fill_select(&self.doc, s, options.into_iter());
            }
        };
        set("prompt", c.prompts.iter().map(|p| (p.name.clone(), p.name.clone())).collect());
        let mut steps = vec![("all".to_string(), "All steps".to_string())];
        steps.extend(c.steps.iter().map(|s| (s.to_string(), s.to_string())));
        set("step", steps);
        set("variant", c.variants.iter().map(|v| (v.clone(), v.clone())).collect());
        set("metric", c.metrics.iter().map(|m| (m.name.clone(), m.name.clone())).collect());
        set("layer", c.layers.iter().map(|l| (l.to_string(), l.to_string())).collect());
    }

    /// Put the state into the controls, and show only those that apply.
    fn sync_controls(&self) {
        let pairs = self.state.to_pairs();
        let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let has_data = self.data.is_some();
        let n_prompts = self.data.as_ref().map_or(0, |d| d.cube.prompts.len());
        let view = self.state.view;
        for c in &self.ui.controls {
            let v = get(c.key);
            match &c.kind {
                ControlKind::Select(s) => {
                    if s.value() != v {
                        s.set_value(&v);
                    }
                }
                ControlKind::Check(i) => i.set_checked(v == "on"),
                ControlKind::Text(i) => {
                    let focused = self.doc.active_element().is_some_and(|a| a.is_same_node(Some(i.as_ref())));
                    if !focused && i.value() != v {
                        i.set_value(&v);
                        let _ = i.remove_attribute("aria-invalid");
                    }
                }
                ControlKind::Range(i) => {
                    if i.value() != v {
                        i.set_value(&v);
                    }
                }
            }
            let applies = match c.key {
                "prompt" => n_prompts > 1,
                "variant" => view != ViewKind::Heads,
                "layer" => view != ViewKind::Layers,
                "layers" => view == ViewKind::Layers,
                "norm" => view != ViewKind::Grid,
                "share" => view == ViewKind::Heads,
                "values" => view != ViewKind::Grid,
                _ => true,
            };
            set_hidden(&c.wrap, !applies);
            if let ControlKind::Select(s) = &c.kind {
                s.set_disabled(!has_data && matches!(c.key, "prompt" | "step" | "variant" | "metric" | "layer"));
            }
        }
        set_hidden(&self.ui.grid_tools, !(has_data && view == ViewKind::Grid));
        set_hidden(&self.ui.side, !has_data);
    }

    fn fill_info(&self) {
        let info = &self.ui.info;
        dom::clear(info);
        let Some(d) = &self.data else { return };
        let c = &d.cube;
        let doc = &self.doc;
        let h = el(doc, "h2", "", "Dataset");
        let dl = el(doc, "dl", "facts", "");
        let positions: usize = c.prompts.iter().map(|p| p.n_positions()).max().unwrap_or(0);
        let mut facts: Vec<(&str, String)> = vec![
            (if c.sources.len() > 1 { "Files" } else { "File" }, c.sources.join(", ")),
            ("Rows", thousands(c.rows_read)),
            ("Steps", range_text(&c.steps)),
            ("Layers", range_text(&c.layers)),
            ("Positions", thousands(positions as u64)),
            ("Variants", format!("{} ({})", c.variants.len(), abbreviate(&c.variants, 6))),
            ("Metrics", c.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")),
            ("Memory", human_bytes(c.memory_bytes() as f64)),
            ("Load time", human_ms(d.load_ms)),
        ];
        if c.prompts.len() > 1 {
            facts.insert(2, ("Prompts", c.prompts.len().to_string()));
        }
        if c.duplicates > 0 {
            // Rows for a cell already seen: the figures show the later value.
            let at = facts.iter().position(|(k, _)| *k == "Rows").map_or(0, |i| i + 1);
            let text = format!("{} (the later value is kept)", thousands(c.duplicates));
            facts.insert(at, ("Repeated rows", text));
        }
        let infinite: Vec<String> = c
            .metrics
            .iter()
            .zip(&d.infinite)
            .filter(|(_, &n)| n > 0)
            .map(|(m, &n)| format!("{} in {}", thousands(n), m.name))
            .collect();
        if !infinite.is_empty() {
            facts.push(("Infinite values", format!("{} (the top colour, left out of the scale)", infinite.join(", "))));
        }
        for (k, v) in facts {
            let dt = el(doc, "dt", "", k);
            let dd = el(doc, "dd", "", &v);
            append(&dl, &[&dt, &dd]);
        }
        append(info, &[&h, &dl]);
        let p = &c.prompts[self.state.prompt_index(c).min(c.prompts.len().saturating_sub(1))];
        if let Some(text) = &p.text {
            let details = el(doc, "details", "prompt-text", "");
            let summary = el(doc, "summary", "", &format!("Prompt text ({})", p.name));
            let pre = el(doc, "p", "pre", text);
            append(&details, &[&summary, &pre]);
            append(info, &[&details]);
        }
    }

    fn toggle_help(&mut self, open: Option<bool>) {
        self.help_open = open.unwrap_or(!self.help_open);
        set_hidden(&self.ui.help, !self.help_open);
        if self.help_open {
            if let Some(b) = self.ui.help.query_selector("button").ok().flatten() {
                let _ = b.unchecked_into::<HtmlElement>().focus();
            }
        }
    }

    // ----- keyboard and pointer

    fn on_key(&mut self, e: &KeyboardEvent) {
        if e.ctrl_key() || e.meta_key() || e.alt_key() {
            return;
        }
        let key = e.key();
        if self.help_open {
            if key == "Escape" || key == "?" {
                self.toggle_help(Some(false));
                e.prevent_default();
            }
            return;
        }
        if key == "?" {
            self.toggle_help(Some(true));
            e.prevent_default();
            return;
        }
        let Some(d) = &self.data else { return };
        let cube = &d.cube;
        let s = &self.state;
        let n = cube.prompts.get(s.prompt_index(cube)).map_or(0, |p| p.n_positions());
        let next = match key.as_str() {
            "ArrowLeft" => s.shift_layer(cube, -1),
            "ArrowRight" => s.shift_layer(cube, 1),
            "ArrowUp" => s.shift_step(cube, -1),
            "ArrowDown" => s.shift_step(cube, 1),
            "m" | "M" => s.next_metric(cube),
            "s" | "S" => s.next_scale(),
            "v" | "V" => s.next_variant(cube),
            "g" | "G" => s.next_view(),
            "+" | "=" | "-" | "_" => {
                let (first, len) = crate::view::visible_window(s.zoom, n);
                let centre = first as f64 + len as f64 / 2.0;
                let factor = if matches!(key.as_str(), "+" | "=") { 0.5 } else { 2.0 };
                let mut t = s.clone();
                t.zoom = zoom_about(s.zoom, n, centre, factor);
                t
            }
            "0" => {
                let mut t = s.clone();
                t.zoom = fit();
                t
            }
            "Escape" => {
                let mut t = s.clone();
                t.pin = None;
                t
            }
            _ => return,
        };
        e.prevent_default();
        self.hide_tooltip();
        self.commit(next);
        self.paint_now();
    }

    /// CSS px of a client point relative to the canvas.
    fn canvas_point(&self, client_x: f64, client_y: f64) -> (f32, f32) {
        let r = self.ui.canvas.get_bounding_client_rect();
        ((client_x - r.left()) as f32, (client_y - r.top()) as f32)
    }

    fn viewport(&mut self) -> Viewport {
        let (w, h) = *self.canvas_css.get_or_insert_with(|| {
            let r = self.ui.canvas.get_bounding_client_rect();
            (r.width(), r.height())
        });
        Viewport::new(w as f32, h as f32, self.win.device_pixel_ratio() as f32)
    }

    /// Matrix and a fresh layout for the current state and canvas size.
    fn current(&mut self) -> Option<(&Cube, &Matrix, Layout)> {
        let vp = self.viewport();
        let d = self.data.as_ref()?;
        let matrix = self.cache.get(&d.cube, &self.state);
        let layout = Layout::compute(vp, &d.cube, matrix, &self.state);
        Some((&d.cube, matrix, layout))
    }

    fn probe_at(&mut self, client_x: f64, client_y: f64) -> Option<Probe> {
        let (x, y) = self.canvas_point(client_x, client_y);
        let state = self.state.clone();
        let (cube, matrix, layout) = self.current()?;
        let hit = layout.hit_test(matrix, x, y)?;
        Probe::of(cube, matrix, &state, hit)
    }

    fn hide_tooltip(&self) {
        set_hidden(&self.ui.tooltip, true);
    }

    fn on_pointer_move(&mut self, e: &MouseEvent) {
        if let Some(drag) = &mut self.drag {
            let dx = e.client_x() as f64 - drag.start_x;
            if dx.abs() > 3.0 {
                drag.moved = true;
            }
            if drag.moved {
                let start_zoom = drag.start_zoom;
                let state = self.state.clone();
                if let Some((cube, matrix, layout)) = self.current() {
                    let _ = cube;
                    let n = matrix.n_positions;
                    let mut s = state;
                    s.zoom = pan(start_zoom, n, layout.positions_for_dx(-dx as f32));
                    self.hide_tooltip();
                    self.commit(s);
                }
                return;
            }
        }
        let Some(p) = self.probe_at(e.client_x() as f64, e.client_y() as f64) else {
            self.hide_tooltip();
            return;
        };
        let tip = &self.ui.tooltip;
        tip.set_text_content(Some(&p.tooltip_text()));
        set_hidden(tip, false);
        // Place it beside the pointer, inside the window.
        let (w, h) = (tip.offset_width() as f64, tip.offset_height() as f64);
        let vw = self.win.inner_width().ok().and_then(|v| v.as_f64()).unwrap_or(1000.0);
        let vh = self.win.inner_height().ok().and_then(|v| v.as_f64()).unwrap_or(800.0);
        let mut x = e.client_x() as f64 + 14.0;
        let mut y = e.client_y() as f64 + 16.0;
        if x + w > vw - 4.0 {
            x = (e.client_x() as f64 - w - 14.0).max(4.0);
        }
        if y + h > vh - 4.0 {
            y = (e.client_y() as f64 - h - 12.0).max(4.0);
        }
        let style = tip.style();
        let _ = style.set_property("left", &format!("{x:.0}px"));
        let _ = style.set_property("top", &format!("{y:.0}px"));
    }

    fn on_pointer_down(&mut self, e: &MouseEvent) {
        if e.button() != 0 || self.data.is_none() {
            return;
        }
        self.drag = Some(Drag { start_x: e.client_x() as f64, start_zoom: self.state.zoom, moved: false });
    }

    fn on_pointer_up(&mut self, e: &MouseEvent) {
        let Some(drag) = self.drag.take() else { return };
        if drag.moved {
            return;
        }
        // A click: pin (or unpin) the position under the pointer.
        if let Some(p) = self.probe_at(e.client_x() as f64, e.client_y() as f64) {
            let mut s = self.state.clone();
            s.pin = if s.pin == Some(p.position) { None } else { Some(p.position) };
            self.commit(s);
        }
    }

    fn on_wheel(&mut self, e: &WheelEvent) {
        let (x, _y) = self.canvas_point(e.client_x() as f64, e.client_y() as f64);
        let state = self.state.clone();
        let Some((_, matrix, layout)) = self.current() else { return };
        let n = matrix.n_positions;
        let Some(anchor) = layout.position_at_x(x) else { return };
        e.prevent_default();
        let (dx, dy) = (e.delta_x(), e.delta_y());
        let mut s = state;
        if e.shift_key() || dx.abs() > dy.abs() {
            let d = if dx.abs() > dy.abs() { dx } else { dy };
            s.zoom = pan(s.zoom, n, layout.positions_for_dx(d as f32));
        } else if dy != 0.0 {
            let factor = if dy > 0.0 { 1.25 } else { 0.8 };
            s.zoom = zoom_about(s.zoom, n, anchor, factor);
        }
        self.hide_tooltip();
        self.commit(s);
    }

    fn on_dblclick(&mut self) {
        let mut s = self.state.clone();
        s.zoom = fit();
        self.commit(s);
    }

    // ----- painting

    fn request_frame(&mut self) {
        if self.frame_pending {
            return;
        }
        self.frame_pending = true;
        FRAME.with(|f| {
            if let Some(cb) = f.borrow().as_ref() {
                let _ = self.win.request_animation_frame(cb.as_ref().unchecked_ref());
            }
        });
    }

    /// Paint now if a frame is pending. Discrete changes (a control, a key, the hash) paint in
    /// their event handler, as the pages we replace do, rather than waiting up to a frame for
    /// `requestAnimationFrame`; continuous ones (wheel, drag) stay coalesced per frame.
    fn paint_now(&mut self) {
        if self.frame_pending {
            self.frame();
        }
    }

    fn frame(&mut self) {
        self.frame_pending = false;
        self.mark("mi-frame-start");
        let vp = self.viewport();
        let (w, h) = vp.device_size();
        let canvas = &self.ui.canvas;
        if canvas.width() != w || canvas.height() != h {
            canvas.set_width(w);
            canvas.set_height(h);
        }
        let ctx = &self.ui.ctx;
        let Some(d) = &self.data else {
            ctx.set_transform(1.0, 0.0, 0.0, 1.0, 0.0, 0.0).ok();
            ctx.clear_rect(0.0, 0.0, w as f64, h as f64);
            return;
        };
        let cube = &d.cube;
        let state = &self.state;
        let matrix = self.cache.get(cube, state);
        let layout = Layout::compute(vp, cube, matrix, state);
        render::paint(cube, matrix, &layout, state, &mut self.raster);
        let image = match ImageData::new_with_u8_clamped_array_and_sh(Clamped(&self.raster.rgba), self.raster.width_px, self.raster.height_px) {
            Ok(i) => i,
            Err(e) => {
                web_sys::console::error_2(&"mask-impact: cannot make the image".into(), &e);
                return;
            }
        };
        ctx.set_transform(1.0, 0.0, 0.0, 1.0, 0.0, 0.0).ok();
        let overlay = self.overlay.as_ref().filter(|i| i.complete() && i.natural_width() > 0);
        match (&layout.grid, overlay) {
            (Some(g), Some(img)) if state.view == ViewKind::Grid => {
                // The raster goes over the picture: through an offscreen canvas (putImageData
                // replaces pixels, drawImage blends).
                let off = match &self.overlay_canvas {
                    Some(c) => c.clone(),
                    None => {
                        let c: HtmlCanvasElement = el(&self.doc, "canvas", "", "").unchecked_into();
                        self.overlay_canvas = Some(c.clone());
                        c
                    }
                };
                if off.width() != w || off.height() != h {
                    off.set_width(w);
                    off.set_height(h);
                }
                let dpr = vp.device_pixel_ratio as f64;
                ctx.set_fill_style_str("#ffffff");
                ctx.fill_rect(0.0, 0.0, w as f64, h as f64);
                let r = g.grid;
                let _ = ctx.draw_image_with_html_image_element_and_dw_and_dh(img, r.x as f64 * dpr, r.y as f64 * dpr, r.w as f64 * dpr, r.h as f64 * dpr);
                if let Some(octx) = off.get_context("2d").ok().flatten() {
                    let octx: CanvasRenderingContext2d = octx.unchecked_into();
                    let _ = octx.put_image_data(&image, 0.0, 0.0);
                    // The cells carry the opacity as alpha: the picture shows through them.
                    let _ = ctx.draw_image_with_html_canvas_element(&off, 0.0, 0.0);
                }
            }
            _ => {
                let _ = ctx.put_image_data(&image, 0.0, 0.0);
            }
        }
        let dpr = vp.device_pixel_ratio as f64;
        ctx.set_transform(dpr, 0.0, 0.0, dpr, 0.0, 0.0).ok();
        draw_labels(ctx, &layout.labels(cube, matrix, state));
        ctx.set_transform(1.0, 0.0, 0.0, 1.0, 0.0, 0.0).ok();

        // Side panels follow the state.
        let key = MatrixKey::of(state);
        if self.topk_key.as_ref() != Some(&key) {
            fill_topk(&self.doc, &self.ui, cube, matrix, state);
            self.topk_key = Some(key);
        }
        let profile_key = format!("{:?}|{}|{:?}|{:?}|{}|{:?}|{}", state.pin, state.metric, state.step, state.prompt, state.variant, state.view, state.layer);
        if profile_key != self.profile_key {
            self.profile_key = profile_key;
            draw_profile(&self.ui, cube, state, self.win.device_pixel_ratio());
        }

        self.mark("mi-frame-end");
        self.measure("mi-frame", "mi-frame-start", "mi-frame-end");
        if self.mark_load_paint {
            // The first view of a load (early or whole).
            self.mark_load_paint = false;
            self.mark("mi-painted");
            self.measure("mi-load", "mi-load-start", "mi-painted");
        }
        if self.mark_full_paint {
            self.mark_full_paint = false;
            self.mark("mi-full-painted");
            self.measure("mi-load-full", "mi-load-start", "mi-full-painted");
            for (resolve, _) in self.waiters.drain(..) {
                let _ = resolve.call1(&JsValue::UNDEFINED, &JsValue::UNDEFINED);
            }
        }
        if self.mark_view_paint {
            self.mark_view_paint = false;
            self.mark("mi-view-painted");
            self.measure("mi-view", "mi-view-start", "mi-view-painted");
        }
    }
}

/// Fetch `href` into a Blob and hand it to job `id` (named `name` in messages).
fn fetch_blob(win: &Window, href: &str, id: u32, name: String) {
    fn fail(id: u32, msg: String) {
        with_app(|a| {
            if a.job.as_ref().is_some_and(|j| j.id == id) {
                a.fail_load(&msg);
            }
        });
    }
    let name_r = name.clone();
    let on_response = Closure::<dyn FnMut(JsValue)>::once(move |resp: JsValue| {
        let resp: web_sys::Response = match resp.dyn_into() {
            Ok(r) => r,
            Err(_) => return fail(id, format!("{name_r}: cannot download it: no response")),
        };
        if !resp.ok() {
            return fail(id, format!("{name_r}: cannot download it: HTTP {} {}", resp.status(), resp.status_text()));
        }
        let blob = match resp.blob() {
            Ok(p) => p,
            Err(e) => return fail(id, format!("{name_r}: cannot download it: {}", js_text(&e))),
        };
        let name_b = name_r.clone();
        let on_blob = Closure::<dyn FnMut(JsValue)>::once(move |blob: JsValue| {
            with_app(|a| a.url_fetched(id, &name_b, blob));
        });
        let name_e = name_r.clone();
        let on_err = Closure::<dyn FnMut(JsValue)>::once(move |e: JsValue| {
            fail(id, format!("{name_e}: cannot download it: {}", js_text(&e)));
        });
        let _ = blob.then2(&on_blob, &on_err);
        on_blob.forget();
        on_err.forget();
    });
    let on_error = Closure::<dyn FnMut(JsValue)>::once(move |e: JsValue| {
        fail(id, format!("{name}: cannot download it: {}", js_text(&e)));
    });
    let _ = win.fetch_with_str(href).then2(&on_response, &on_error);
    on_response.forget();
    on_error.forget();
}

fn is_image(f: &File) -> bool {
    let t = f.type_();
    if t.starts_with("image/") {
        return true;
    }
    let name = f.name().to_ascii_lowercase();
    [".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".avif"].iter().any(|e| name.ends_with(e))
}

fn range_text(values: &[i64]) -> String {
    match (values.first(), values.last()) {
        (Some(a), Some(b)) if a != b => format!("{} ({a}–{b})", values.len()),
        (Some(a), _) => format!("1 ({a})"),
        _ => "0".to_string(),
    }
}

/// A load's files in one line: up to three by name; more by their common folder and count
/// (`run/ (50 files)`: a dropped folder), or the first and a count.
fn files_label(names: &[String]) -> String {
    if names.len() <= 3 {
        return names.join(", ");
    }
    let folder = |n: &str| n.split_once('/').map(|(f, _)| f.to_string());
    match folder(&names[0]) {
        Some(f) if names.iter().all(|n| folder(n).as_deref() == Some(f.as_str())) => format!("{f}/ ({} files)", names.len()),
        _ => format!("{} and {} more files", names[0], names.len() - 1),
    }
}

fn abbreviate(names: &[String], max: usize) -> String {
    if names.len() <= max {
        names.join(", ")
    } else {
        format!("{}, … {}", names[..max - 1].join(", "), names[names.len() - 1])
    }
}

fn css_colour(c: [u8; 4]) -> String {
    format!("rgba({},{},{},{:.3})", c[0], c[1], c[2], c[3] as f32 / 255.0)
}

/// The one font size labels are drawn at: a label of another size is this font scaled by the
/// canvas transform. Label sizes follow the layout (row height, column width: a zoom meets new
/// ones), and the first text drawn at a size the page had not used cost the browser a font
/// look-up: the first label of a load's first paint took 2, 2, 4 and 63 ms in four loads of
/// the seed-scale file (headless Chromium 156 on Linux): its row labels' 8.1 px, a size the
/// page's warm-up had not drawn.
const LABEL_FONT_PX: f32 = 10.0;
const LABEL_FONT: &str = "10px system-ui, -apple-system, 'Segoe UI', sans-serif";

/// Draw the labels with canvas text (the context's transform maps CSS px to device px).
fn draw_labels(ctx: &CanvasRenderingContext2d, labels: &[Label]) {
    ctx.set_text_baseline("middle");
    ctx.set_font(LABEL_FONT);
    let mut colour = [0u8; 4];
    let mut align = None;
    ctx.set_fill_style_str(&css_colour(colour));
    for l in labels {
        if l.colour != colour {
            colour = l.colour;
            ctx.set_fill_style_str(&css_colour(colour));
        }
        if align != Some(l.align) {
            align = Some(l.align);
            ctx.set_text_align(match l.align {
                Align::Left => "left",
                Align::Center => "center",
                Align::Right => "right",
            });
        }
        if l.rotate_deg == 0.0 && l.font_px == LABEL_FONT_PX {
            let _ = ctx.fill_text(&l.text, l.x as f64, l.y as f64);
        } else {
            ctx.save();
            let _ = ctx.translate(l.x as f64, l.y as f64);
            if l.rotate_deg != 0.0 {
                let _ = ctx.rotate((l.rotate_deg as f64).to_radians());
            }
            let scale = f64::from(l.font_px / LABEL_FONT_PX);
            if scale != 1.0 {
                let _ = ctx.scale(scale, scale);
            }
            let _ = ctx.fill_text(&l.text, 0.0, 0.0);
            ctx.restore();
        }
    }
}

/// The k positions with the largest values in the current matrix (max over its rows).
///
/// The list's items are made once and then only their text changes (a view change rewrote
/// 50 elements: up to a few ms of a frame).
fn fill_topk(doc: &Document, ui: &Ui, cube: &Cube, matrix: &Matrix, state: &ViewState) {
    // Per-position maxima are cached with the matrix: only the peak rows of the k best are
    // looked up here.
    let best = matrix.top_positions(TOP_K, state.exclude0);
    let metric = cube.metrics.get(matrix.metric).map_or("", |m| m.name.as_str());
    let over = if matrix.rows.len() > 1 { "maximum over the rows shown" } else { "the row shown" };
    ui.topk_caption.set_text_content(Some(&format!("{metric}, {over}{}", if state.exclude0 { ", position 0 left out" } else { "" })));
    let prompt = cube.prompts.get(matrix.prompt);
    let mut item = ui.topk_list.first_element_child();
    for (p, v) in best {
        // Where the peak is: the layer (and, over several steps or variants, which of them).
        let peak = (0..matrix.rows.len())
            .filter(|&r| matrix.value(r, p) == v)
            .find_map(|r| matrix.rows.get(r))
            .map(|row| {
                let mut text = format!("L{}", cube.layers.get(row.layer).copied().unwrap_or_default());
                if matches!(state.step, StepSelection::All) {
                    text += &format!(" · step {}", cube.steps.get(row.step).copied().unwrap_or_default());
                }
                if state.view == ViewKind::Heads {
                    text = cube.variants.get(row.variant).cloned().unwrap_or_default();
                }
                text
            })
            .unwrap_or_default();
        let li = match item {
            Some(li) => li,
            None => {
                let li = el(doc, "li", "", "");
                let b = el(doc, "button", "topk-item", "");
                attrs(&b, &[("type", "button"), ("title", "Pin this position")]);
                let at = el(doc, "span", "peak", "");
                attrs(&at, &[("title", "where the maximum is")]);
                append(&b, &[&el(doc, "span", "pos", ""), &el(doc, "span", "tok", ""), &el(doc, "span", "val", ""), &at]);
                append(&li, &[&b]);
                append(&ui.topk_list, &[&li]);
                li.into()
            }
        };
        if let Some(b) = li.first_element_child() {
            let _ = b.set_attribute("data-position", &p.to_string());
            let texts = [
                format!("#{p}"),
                display_token(prompt.and_then(|pr| pr.token(p)).unwrap_or(""), 18),
                format!("{v:.4}"),
                peak,
            ];
            let mut span = b.first_element_child();
            for text in texts {
                let Some(s) = span else { break };
                if s.text_content().as_deref() != Some(text.as_str()) {
                    s.set_text_content(Some(&text));
                }
                span = s.next_element_sibling();
            }
        }
        item = li.next_element_sibling();
    }
    // Fewer positions than last time: drop the extra items.
    while let Some(extra) = item {
        item = extra.next_element_sibling();
        extra.remove();
    }
    set_hidden(&ui.topk, ui.topk_list.child_element_count() == 0);
}

/// Draw the token profile of the pinned position (plotters on the canvas).
fn draw_profile(ui: &Ui, cube: &Cube, state: &ViewState, dpr: f64) {
    let Some(pin) = state.pin else {
        set_hidden(&ui.profile, true);
        return;
    };
    set_hidden(&ui.profile, false);
    let canvas = &ui.profile_canvas;
    let r = canvas.get_bounding_client_rect();
    let (w, h) = (r.width().max(200.0), r.height().max(150.0));
    let _ = dpr; // plotters draws in canvas pixels; keep CSS pixels for readable text.
    canvas.set_width(w.round() as u32);
    canvas.set_height(h.round() as u32);
    let mut variants: Vec<String> = Vec::new();
    for v in ["Full", "Attn", state.variant.as_str()] {
        if cube.variant_index(v).is_some() && !variants.iter().any(|x| x == v) {
            variants.push(v.to_string());
        }
    }
    let Some(backend) = plotters_canvas::CanvasBackend::with_canvas_object(canvas.clone()) else {
        return;
    };
    use plotters::prelude::IntoDrawingArea;
    let area = backend.into_drawing_area();
    if let Err(e) = render::token_profile(&area, cube, state, pin, &variants) {
        web_sys::console::error_1(&format!("mask-impact: token profile: {e}").into());
    }
}

// ---------------------------------------------------------------------------------------------
// Listeners and the script API

fn install_listeners(win: &Window, doc: &Document) -> Result<(), JsValue> {
    let (file_input, canvas, plot, controls_bar, side, help, topk_list) = with_app(|a| {
        (
            a.ui.file_input.clone(),
            a.ui.canvas.clone(),
            a.ui.plot.clone(),
            a.ui.controls_bar.clone(),
            a.ui.side.clone(),
            a.ui.help.clone(),
            a.ui.topk_list.clone(),
        )
    })
    .ok_or("page state missing")?;

    {
        let input = file_input.clone();
        on::<Event>(&file_input, "change", move |_| {
            let files = file_list(input.files());
            input.set_value("");
            with_app(|a| a.open_files(files));
        });
    }
    // Drop anywhere.
    on_active::<DragEvent>(doc, "dragover", move |e| {
        e.prevent_default();
        if let Some(dt) = e.data_transfer() {
            dt.set_drop_effect("copy");
        }
        with_app(|a| {
            let _ = a.ui.root.class_list().add_1("dragging");
        });
    });
    on::<DragEvent>(doc, "dragleave", move |e| {
        if e.related_target().is_none() {
            with_app(|a| {
                let _ = a.ui.root.class_list().remove_1("dragging");
            });
        }
    });
    on_active::<DragEvent>(doc, "drop", move |e| {
        e.prevent_default();
        with_app(|a| {
            let _ = a.ui.root.class_list().remove_1("dragging");
        });
        let dt = e.data_transfer();
        // Dropped folders are walked for their result files (asynchronously; the entries must
        // be taken while the drop event lasts).
        let entries = dt.as_ref().map(dropped_entries).unwrap_or_default();
        if entries.iter().any(web_sys::FileSystemEntry::is_directory) {
            wasm_bindgen_futures::spawn_local(async move {
                match files_of_entries(entries).await {
                    Ok(files) => with_app(|a| a.open_named_files(files)),
                    Err(msg) => with_app(|a| a.show_error(&msg)),
                };
            });
            return;
        }
        let files = file_list(dt.and_then(|d| d.files()));
        with_app(|a| a.open_files(files));
    });
    // Controls (delegated).
    for ev in ["change", "input"] {
        let bar = controls_bar.clone();
        let handler = move |e: Event| {
            let Some(target) = e.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
            let Some(key) = target.get_attribute("data-key") else { return };
            // Text fields apply on change (Enter / leaving the field), ranges while dragging.
            let is_text = target.get_attribute("type").as_deref() == Some("text");
            if ev == "input" && (is_text || target.tag_name() == "SELECT") {
                return;
            }
            with_app(|a| a.on_control(&key));
        };
        on::<Event>(&bar, ev, handler);
        on::<Event>(&side, ev, handler);
    }
    // Side panel buttons (delegated).
    on::<MouseEvent>(&side, "click", move |e| {
        let Some(target) = e.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
        let Some(button) = target.closest("button").ok().flatten() else { return };
        if let Some(p) = button.get_attribute("data-position").and_then(|p| p.parse::<usize>().ok()) {
            with_app(|a| {
                let mut s = a.state.clone();
                s.pin = Some(p);
                a.commit(s);
            });
            return;
        }
        match button.get_attribute("data-action").as_deref() {
            Some("image") => {
                with_app(|a| a.ui.file_input.click());
            }
            Some("clear-image") => {
                with_app(|a| {
                    a.overlay = None;
                    if let Some(u) = a.overlay_url.take() {
                        let _ = web_sys::Url::revoke_object_url(&u);
                    }
                    a.request_frame();
                });
            }
            Some("unpin") => {
                with_app(|a| {
                    let mut s = a.state.clone();
                    s.pin = None;
                    a.commit(s);
                });
            }
            _ => {}
        }
    });
    let _ = topk_list;
    on::<MouseEvent>(&help, "click", move |e| {
        let Some(target) = e.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
        let close = target.get_attribute("data-action").as_deref() == Some("close-help") || target.class_list().contains("help");
        if close {
            with_app(|a| a.toggle_help(Some(false)));
        }
    });
    // Keyboard.
    on::<KeyboardEvent>(doc, "keydown", move |e| {
        if let Some(t) = e.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) {
            let tag = t.tag_name();
            let typing = match tag.as_str() {
                "SELECT" | "TEXTAREA" => true,
                "INPUT" => t.get_attribute("type").as_deref() != Some("checkbox"),
                _ => t.get_attribute("contenteditable").is_some(),
            };
            if typing && e.key() != "Escape" {
                return;
            }
        }
        with_app(|a| a.on_key(&e));
    });
    // Pointer.
    on::<MouseEvent>(&canvas, "mousemove", move |e| {
        with_app(|a| a.on_pointer_move(&e));
    });
    on::<MouseEvent>(&canvas, "mouseleave", move |_| {
        with_app(|a| a.hide_tooltip());
    });
    on::<MouseEvent>(&canvas, "mousedown", move |e| {
        with_app(|a| a.on_pointer_down(&e));
    });
    on::<MouseEvent>(win, "mousemove", move |e| {
        with_app(|a| {
            if a.drag.is_some() {
                a.on_pointer_move(&e);
            }
        });
    });
    on::<MouseEvent>(win, "mouseup", move |e| {
        with_app(|a| a.on_pointer_up(&e));
    });
    on::<MouseEvent>(&canvas, "dblclick", move |_| {
        with_app(|a| a.on_dblclick());
    });
    on_active::<WheelEvent>(&canvas, "wheel", move |e| {
        with_app(|a| a.on_wheel(&e));
    });
    on::<Event>(win, "hashchange", move |_| {
        with_app(|a| a.on_hash_change());
    });
    // Resize: the canvas follows its box.
    let observer_cb = Closure::<dyn FnMut(JsValue)>::new(move |_entries: JsValue| {
        with_app(|a| {
            a.canvas_css = None;
            a.request_frame();
        });
    });
    let observer = web_sys::ResizeObserver::new(observer_cb.as_ref().unchecked_ref())?;
    observer.observe(&plot);
    observer.observe(&canvas);
    observer_cb.forget();
    std::mem::forget(observer);
    Ok(())
}

/// A file opened by its path (a dropped folder's files: `run/generation_step=3/part-0.parquet`).
type NamedFile = (String, File);

/// The file-system entries of a drop's items (files and folders).
fn dropped_entries(dt: &web_sys::DataTransfer) -> Vec<web_sys::FileSystemEntry> {
    let items = dt.items();
    (0..items.length())
        .filter_map(|i| items.get(i))
        .filter(|item| item.kind() == "file")
        .filter_map(|item| item.webkit_get_as_entry().ok().flatten())
        .collect()
}

/// The files of dropped `entries`, each named by its path: a file as it is; a folder walked,
/// its sub-folders too, for its result files (`ingest::is_result_file_name`), in path order
/// (`run/generation_step=3/part-0.parquet`). An error names the folder that holds none, or
/// what could not be read.
async fn files_of_entries(entries: Vec<web_sys::FileSystemEntry>) -> Result<Vec<NamedFile>, String> {
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{FileSystemDirectoryEntry, FileSystemEntry, FileSystemFileEntry};
    let path_of = |e: &FileSystemEntry| {
        let p = e.full_path();
        p.strip_prefix('/').map(str::to_string).unwrap_or(p)
    };
    let file_of = |entry: &FileSystemFileEntry| {
        JsFuture::from(js_sys::Promise::new(&mut |resolve, reject| {
            entry.file_with_callback_and_callback(&resolve, &reject);
        }))
    };
    let mut files = Vec::new();
    for top in entries {
        let top_path = path_of(&top);
        if !top.is_directory() {
            let file = file_of(top.unchecked_ref()).await.map_err(|e| format!("{top_path}: cannot read it: {}", js_text(&e)))?;
            files.push((top_path, file.unchecked_into()));
            continue;
        }
        let mut found = Vec::new();
        let mut folders: Vec<FileSystemDirectoryEntry> = vec![top.unchecked_into()];
        while let Some(folder) = folders.pop() {
            let reader = folder.create_reader();
            // `readEntries` gives a folder's entries a batch at a time, then an empty batch.
            loop {
                let batch = JsFuture::from(js_sys::Promise::new(&mut |resolve, reject| {
                    if let Err(e) = reader.read_entries_with_callback_and_callback(&resolve, &reject) {
                        let _ = reject.call1(&JsValue::UNDEFINED, &e);
                    }
                }))
                .await
                .map_err(|e| format!("{}: cannot list the folder: {}", path_of(&folder), js_text(&e)))?;
                let batch: Array = batch.unchecked_into();
                if batch.length() == 0 {
                    break;
                }
                for entry in batch.iter().map(JsCast::unchecked_into::<FileSystemEntry>) {
                    if entry.is_directory() && crate::ingest::is_dataset_folder_name(&entry.name()) {
                        folders.push(entry.unchecked_into());
                    } else if entry.is_file() && crate::ingest::is_result_file_name(&entry.name()) {
                        let path = path_of(&entry);
                        let file = file_of(entry.unchecked_ref()).await.map_err(|e| format!("{path}: cannot read it: {}", js_text(&e)))?;
                        found.push((path, file.unchecked_into::<File>()));
                    }
                }
            }
        }
        files.extend(dataset_files(&top_path, found)?);
    }
    Ok(files)
}

/// The dataset files of a picked folder (all its files, each with its path from the folder,
/// `webkitRelativePath`), in path order, as a dropped folder's. An error names the folder when
/// none is a result file.
fn files_of_picked_folder(files: Vec<File>) -> Result<Vec<NamedFile>, String> {
    if files.is_empty() {
        // The browser gives no file of an empty folder, so not its name either.
        return Err("The chosen folder is empty: choose one that holds result files (.parquet, .csv, .json, .jsonl, .ndjson, compressed or not), in it or in its sub-folders".into());
    }
    let path_of = |f: &File| {
        js_sys::Reflect::get(f, &JsValue::from_str("webkitRelativePath"))
            .ok()
            .and_then(|p| p.as_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| f.name())
    };
    let folder = files.first().map(|f| path_of(f).split('/').next().unwrap_or_default().to_string()).unwrap_or_default();
    let found = files
        .into_iter()
        .map(|f| (path_of(&f), f))
        .filter(|(path, _)| crate::ingest::is_dataset_file_path(path))
        .collect();
    dataset_files(&folder, found)
}

/// The result files `found` in `folder` (dropped or picked), in path order; an error naming
/// the folder when there are none.
fn dataset_files(folder: &str, mut found: Vec<NamedFile>) -> Result<Vec<NamedFile>, String> {
    if found.is_empty() {
        return Err(format!("{folder}: {}", crate::ingest::NO_RESULT_FILES));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

fn file_list(list: Option<web_sys::FileList>) -> Vec<File> {
    let Some(list) = list else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

fn to_js<T: Serialize>(v: &T) -> JsValue {
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    v.serialize(&ser).unwrap_or(JsValue::NULL)
}

/// A promise settled by the load `start` begins (it gets the promise's resolve and reject
/// functions); rejected at once when the page state is in use.
fn job_promise(start: impl FnOnce(&mut App, Option<(Function, Function)>)) -> JsValue {
    let (promise, resolvers) = promise_with_resolvers();
    if with_app(|a| start(a, resolvers.clone())).is_none() {
        if let Some((_, reject)) = resolvers {
            let _ = reject.call1(&JsValue::UNDEFINED, &"the viewer is busy; try again".into());
        }
    }
    promise.into()
}

/// `window.maskImpact`: `openUrl`, `state`, `locate`, `probe` (see the page contract).
fn define_api(win: &Window) -> Result<(), JsValue> {
    let api = Object::new();
    let open_url = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |url: JsValue| -> JsValue {
        let url = url.as_string().unwrap_or_default();
        job_promise(|a, resolvers| a.open_url(&url, resolvers))
    });
    let state = Closure::<dyn FnMut() -> JsValue>::new(move || -> JsValue {
        with_app(|a| to_js(&a.state)).unwrap_or(JsValue::NULL)
    });
    // Not part of the page contract: for the tests of crash handling.
    let crash_decoder = Closure::<dyn FnMut() -> JsValue>::new(move || -> JsValue {
        job_promise(|a, resolvers| a.crash_decoder(resolvers))
    });
    let locate = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |arg: JsValue| -> JsValue {
        with_app(|a| {
            let layer = field(&arg, "layer").as_f64()? as i64;
            let position = field(&arg, "position").as_f64()?;
            if position < 0.0 {
                return None;
            }
            let variant = field(&arg, "variant").as_string().unwrap_or_else(|| a.state.variant.clone());
            let r = a.ui.canvas.get_bounding_client_rect();
            let (cube, matrix, layout) = a.current()?;
            let (x, y) = layout.locate(cube, matrix, layer, position as usize, &variant)?;
            #[derive(Serialize)]
            struct Point {
                x: f64,
                y: f64,
            }
            Some(to_js(&Point { x: r.left() + x as f64, y: r.top() + y as f64 }))
        })
        .flatten()
        .unwrap_or(JsValue::NULL)
    });
    let probe = Closure::<dyn FnMut(f64, f64) -> JsValue>::new(move |x: f64, y: f64| -> JsValue {
        with_app(|a| a.probe_at(x, y).map(|p| to_js(&p))).flatten().unwrap_or(JsValue::NULL)
    });
    Reflect::set(&api, &"openUrl".into(), &open_url.into_js_value())?;
    Reflect::set(&api, &"state".into(), &state.into_js_value())?;
    Reflect::set(&api, &"crashDecoder".into(), &crash_decoder.into_js_value())?;
    Reflect::set(&api, &"locate".into(), &locate.into_js_value())?;
    Reflect::set(&api, &"probe".into(), &probe.into_js_value())?;
    Reflect::set(win, &"maskImpact".into(), &api)?;
    Ok(())
}
