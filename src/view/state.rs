//! [`ViewState`]: everything that defines what is on screen, as `key=value` pairs in the URL hash.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cube::{Cube, Subset};

/// Which picture is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewKind {
    /// Layers × positions heatmap for one variant (hash `view=layers`).
    Layers,
    /// Image tokens as a square patch grid plus a strip of text tokens, one layer (`view=grid`).
    Grid,
    /// Variants × positions for one layer (`view=heads`).
    Heads,
}

/// Which generation step(s) are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepSelection {
    /// One step, by its value (not its index).
    One(i64),
    /// Every step, rows grouped by step (hash `step=all`).
    All,
}

/// What a cell's colour is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalisation {
    /// Relative to the maximum of its row (the original viewer).
    Row,
    /// Relative to the maximum of its column (position).
    Column,
    /// Relative to the maximum of everything shown.
    Global,
}

/// How a relative value is mapped onto the colour range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// `t = v / max`.
    Linear,
    /// `t = sqrt(v / max)`.
    Sqrt,
    /// `t = log10(1 + 999 · v / max) / 3`: three decades of relative values.
    Log,
    /// `t` = fraction of the group's values that are `<= v` (rank-based).
    Percentile,
}

/// Colour map of the heat cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourMap {
    /// The original viewer's 21 discrete levels, white → red.
    Reds,
    /// Matplotlib's viridis (continuous).
    Viridis,
    /// Matplotlib's magma (continuous).
    Magma,
    /// Blue ← white → red, centred on zero.
    Diverging,
}

/// An inclusive range of integers, written `first-last` (or `n` when both are equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InclusiveRange {
    pub first: i64,
    pub last: i64,
}

impl InclusiveRange {
    /// Whether `v` lies in the range.
    pub fn contains(&self, v: i64) -> bool {
        self.first <= v && v <= self.last
    }

    /// Parse `a-b` or `a` (whitespace tolerated); `None` when invalid or `a > b`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (a, b) = match s.split_once('-') {
            // A leading '-' would be a negative number: not used for layers or positions.
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let v = s.parse().ok()?;
                (v, v)
            }
        };
        (a <= b).then_some(InclusiveRange { first: a, last: b })
    }
}

impl fmt::Display for InclusiveRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Rows × columns of the image-patch grid, written `16x16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GridShape {
    pub rows: usize,
    pub cols: usize,
}

impl GridShape {
    /// Parse `RxC` (`x` or `×`); `None` when invalid or zero.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (r, c) = s.split_once(['x', 'X', '×'])?;
        let rows: usize = r.trim().parse().ok()?;
        let cols: usize = c.trim().parse().ok()?;
        (rows > 0 && cols > 0 && rows <= 4096 && cols <= 4096).then_some(GridShape { rows, cols })
    }
}

impl fmt::Display for GridShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// The whole view state. It lives in the URL hash (see [`ViewState::to_hash`] and
/// [`ViewState::from_hash`]); serde gives the same keys as a plain object (`maskImpact.state()`).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewState {
    /// `view`: which picture.
    pub view: ViewKind,
    /// `step`: one step value or `all`.
    pub step: StepSelection,
    /// `variant`: variant name (layers and grid views).
    pub variant: String,
    /// `metric`: metric column name.
    pub metric: String,
    /// `layer`: layer value used by the grid and heads views (and the keyboard in all views).
    pub layer: i64,
    /// `layers`: layer filter for the layers view (`None` = all layers).
    pub layers: Option<InclusiveRange>,
    /// `prompt`: prompt name; `None` = the first prompt (only written when there are several).
    pub prompt: Option<String>,
    /// `norm`: `row` | `column` | `global`.
    pub norm: Normalisation,
    /// `scale`: `linear` | `sqrt` | `log` | `percentile`.
    pub scale: Scale,
    /// `clip`: percentile (0 < p ≤ 100) of the group used instead of its maximum.
    pub clip_percentile: Option<f32>,
    /// `exclude0`: leave position 0 (grid view: the first image token) out of the scale.
    pub exclude0: bool,
    /// `heatmap`: colour the cells (off = white cells, numbers only).
    pub heatmap: bool,
    /// `values`: print numbers in the cells when they fit.
    pub values: bool,
    /// `cmap`: colour map.
    pub cmap: ColourMap,
    /// `share`: heads view shows each variant's value over the `Full` value.
    pub share: bool,
    /// `pin`: a pinned position (highlighted; the token profile follows it).
    pub pin: Option<usize>,
    /// `zoom`: visible position window (inclusive); `None` = all positions.
    pub zoom: Option<InclusiveRange>,
    /// `grid`: image grid shape override.
    pub grid: Option<GridShape>,
    /// `opacity`: opacity of the grid cells over a loaded image, 0..=1.
    pub opacity: f32,
    /// `gridlines`: draw lines between grid cells.
    pub gridlines: bool,
}

impl Default for ViewState {
    /// Defaults that do not depend on a cube (use [`ViewState::for_cube`] when you have one).
    fn default() -> Self {
        ViewState {
            view: ViewKind::Layers,
            step: StepSelection::One(0),
            variant: "Full".to_string(),
            metric: "l2_distance".to_string(),
            layer: 0,
            layers: None,
            prompt: None,
            norm: Normalisation::Row,
            scale: Scale::Linear,
            clip_percentile: None,
            exclude0: true,
            heatmap: true,
            values: false,
            cmap: ColourMap::Reds,
            share: false,
            pin: None,
            zoom: None,
            grid: None,
            opacity: 1.0,
            gridlines: true,
        }
    }
}

/// The hash keys, in the order [`ViewState::to_hash`] writes them.
pub const HASH_KEYS: [&str; 20] = [
    "view", "step", "variant", "metric", "layer", "layers", "prompt", "norm", "scale", "clip",
    "exclude0", "heatmap", "values", "cmap", "share", "pin", "zoom", "grid", "opacity", "gridlines",
];

impl ViewKind {
    /// Hash spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ViewKind::Layers => "layers",
            ViewKind::Grid => "grid",
            ViewKind::Heads => "heads",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "layers" => Some(ViewKind::Layers),
            "grid" => Some(ViewKind::Grid),
            "heads" => Some(ViewKind::Heads),
            _ => None,
        }
    }
    /// The next view in the cycle layers → grid → heads → layers (key G).
    pub fn next(self) -> Self {
        match self {
            ViewKind::Layers => ViewKind::Grid,
            ViewKind::Grid => ViewKind::Heads,
            ViewKind::Heads => ViewKind::Layers,
        }
    }
}

impl Normalisation {
    /// Hash spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Normalisation::Row => "row",
            Normalisation::Column => "column",
            Normalisation::Global => "global",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "row" => Some(Normalisation::Row),
            "column" | "col" => Some(Normalisation::Column),
            "global" => Some(Normalisation::Global),
            _ => None,
        }
    }
}

impl Scale {
    /// Hash spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Sqrt => "sqrt",
            Scale::Log => "log",
            Scale::Percentile => "percentile",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "linear" => Some(Scale::Linear),
            "sqrt" => Some(Scale::Sqrt),
            "log" => Some(Scale::Log),
            "percentile" => Some(Scale::Percentile),
            _ => None,
        }
    }
    /// The next scale in the cycle linear → sqrt → log → percentile → linear (key S).
    pub fn next(self) -> Self {
        match self {
            Scale::Linear => Scale::Sqrt,
            Scale::Sqrt => Scale::Log,
            Scale::Log => Scale::Percentile,
            Scale::Percentile => Scale::Linear,
        }
    }
}

impl ColourMap {
    /// Hash spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ColourMap::Reds => "reds",
            ColourMap::Viridis => "viridis",
            ColourMap::Magma => "magma",
            ColourMap::Diverging => "diverging",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "reds" => Some(ColourMap::Reds),
            "viridis" => Some(ColourMap::Viridis),
            "magma" => Some(ColourMap::Magma),
            "diverging" => Some(ColourMap::Diverging),
            _ => None,
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "1" | "true" | "yes" => Some(true),
        "off" | "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Percent-encode a hash value: everything but `A-Z a-z 0-9 - _ . ~` is written `%XX` (UTF-8).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `key=value` pairs of a URL hash (with or without the leading `#`), percent-decoded, in
/// order; parts without `=` are skipped.
pub fn hash_pairs(hash: &str) -> impl Iterator<Item = (String, String)> + '_ {
    hash.strip_prefix('#')
        .unwrap_or(hash)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
}

/// Decode `%XX` escapes (a malformed escape is kept as is; invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ViewState {
    /// The original viewer's defaults for this cube: smallest step, variant `Full` when present
    /// (else the first), metric `l2_distance` when present (else the first), layers view, first
    /// layer, row normalisation, position 0 excluded, linear scale, `reds`.
    pub fn for_cube(cube: &Cube) -> Self {
        ViewState {
            step: StepSelection::One(cube.steps.first().copied().unwrap_or(0)),
            variant: if cube.variant_index("Full").is_some() {
                "Full".to_string()
            } else {
                cube.variants.first().cloned().unwrap_or_default()
            },
            metric: if cube.metric_index("l2_distance").is_some() {
                "l2_distance".to_string()
            } else {
                cube.metrics.first().map(|m| m.name.clone()).unwrap_or_default()
            },
            layer: cube.layers.first().copied().unwrap_or(0),
            prompt: if cube.prompts.len() > 1 {
                cube.prompts.first().map(|p| p.name.clone())
            } else {
                None
            },
            ..ViewState::default()
        }
    }

    /// Parse a URL hash (with or without the leading `#`) leniently: unknown keys are ignored,
    /// a value that is invalid for this cube leaves that key at its [`for_cube`](Self::for_cube)
    /// default. Never panics.
    pub fn from_hash(hash: &str, cube: &Cube) -> Self {
        let mut s = ViewState::for_cube(cube);
        for (k, v) in hash_pairs(hash) {
            s.apply(&k, &v, Some(cube));
        }
        s.validated(cube)
    }

    /// What an early view of a load (rows still being read) shows of them, given the location hash
    /// and the variants and metrics of the rows read so far: the view [`from_hash`] gives on
    /// those axes shows one metric, and one variant except in the heads view (every variant)
    /// or with a pinned position (the token profile adds `Full` and `Attn`).
    ///
    /// [`from_hash`]: Self::from_hash
    pub fn early_view_subset(hash: &str, variants: &[String], metrics: &[String]) -> Subset {
        let mut sorted = variants.to_vec();
        sorted.sort_by(|a, b| crate::cube::variant_order(a, b));
        let axes = Cube {
            sources: Vec::new(),
            rows_read: 0,
            duplicates: 0,
            steps: Vec::new(),
            layers: Vec::new(),
            variants: sorted,
            prompts: Vec::new(),
            metrics: metrics
                .iter()
                .map(|name| crate::cube::Metric { name: name.clone(), values: Vec::<f32>::new().into() })
                .collect(),
        };
        let s = ViewState::from_hash(hash, &axes);
        // The axes have no positions to check a pin against: any pin the hash sets counts.
        let mut pin = ViewState::default();
        for (_, v) in hash_pairs(hash).filter(|(k, _)| k == "pin") {
            pin.apply("pin", &v, None);
        }
        let variants = (s.view != ViewKind::Heads).then(|| {
            let mut keep = vec![s.variant.clone()];
            if pin.pin.is_some() {
                // The token profile's variants (`draw_profile`).
                for v in ["Full", "Attn"] {
                    if axes.variant_index(v).is_some() && !keep.iter().any(|k| k == v) {
                        keep.push(v.to_string());
                    }
                }
            }
            keep
        });
        Subset { variants, metrics: Some(vec![s.metric]) }
    }

    /// The variants whose rows can make the early view of `hash` (before the file's variants
    /// are known): the one the hash names, `Full` (the default), and with a pinned position
    /// `Attn` (the token profile's). `None` for the heads view, which shows every variant.
    /// Whenever the step has the variant the view shows, it is among these, and
    /// [`early_view_subset`](Self::early_view_subset) of these rows' variants is that of all
    /// the step's.
    pub fn early_view_variants(hash: &str) -> Option<Vec<String>> {
        let mut s = ViewState::default();
        let mut asked = None;
        for (k, v) in hash_pairs(hash) {
            if k == "variant" {
                asked = Some(v.trim().to_string()).filter(|v| !v.is_empty()).or(asked);
            } else {
                s.apply(&k, &v, None);
            }
        }
        if s.view == ViewKind::Heads {
            return None;
        }
        let mut out: Vec<String> = asked.into_iter().collect();
        for v in ["Full"].into_iter().chain(s.pin.is_some().then_some("Attn")) {
            if !out.iter().any(|o| o == v) {
                out.push(v.to_string());
            }
        }
        Some(out)
    }

    /// Set one key from its hash spelling. Invalid values are ignored (the key keeps its
    /// value); with a cube, names and step/layer values must exist in it. Returns whether the
    /// value was accepted.
    pub fn apply(&mut self, key: &str, value: &str, cube: Option<&Cube>) -> bool {
        let v = value.trim();
        let optional = v.is_empty() || v == "none" || v == "off";
        match key {
            "view" => ViewKind::parse(v).map(|k| self.view = k).is_some(),
            "step" => {
                if v == "all" {
                    self.step = StepSelection::All;
                    return true;
                }
                match v.parse::<i64>() {
                    Ok(n) if cube.is_none_or(|c| c.step_index(n).is_some()) => {
                        self.step = StepSelection::One(n);
                        true
                    }
                    _ => false,
                }
            }
            "variant" => {
                let ok = !v.is_empty() && cube.is_none_or(|c| c.variant_index(v).is_some());
                if ok {
                    self.variant = v.to_string();
                }
                ok
            }
            "metric" => {
                let ok = !v.is_empty() && cube.is_none_or(|c| c.metric_index(v).is_some());
                if ok {
                    self.metric = v.to_string();
                }
                ok
            }
            "layer" => match v.parse::<i64>() {
                Ok(n) if cube.is_none_or(|c| c.layer_index(n).is_some()) => {
                    self.layer = n;
                    true
                }
                _ => false,
            },
            "layers" => {
                if v.is_empty() || v == "all" {
                    self.layers = None;
                    return true;
                }
                InclusiveRange::parse(v).map(|r| self.layers = Some(r)).is_some()
            }
            "prompt" => {
                let ok = cube.is_none_or(|c| c.prompt_index(v).is_some());
                if ok {
                    self.prompt = Some(v.to_string());
                }
                ok
            }
            "norm" => Normalisation::parse(v).map(|n| self.norm = n).is_some(),
            "scale" => Scale::parse(v).map(|n| self.scale = n).is_some(),
            "clip" => {
                if optional {
                    self.clip_percentile = None;
                    return true;
                }
                match v.trim_end_matches('%').parse::<f32>() {
                    Ok(p) if p > 0.0 && p <= 100.0 => {
                        self.clip_percentile = (p < 100.0).then_some(p);
                        true
                    }
                    _ => false,
                }
            }
            "exclude0" => parse_bool(v).map(|b| self.exclude0 = b).is_some(),
            "heatmap" => parse_bool(v).map(|b| self.heatmap = b).is_some(),
            "values" => parse_bool(v).map(|b| self.values = b).is_some(),
            "cmap" => ColourMap::parse(v).map(|c| self.cmap = c).is_some(),
            "share" => parse_bool(v).map(|b| self.share = b).is_some(),
            "pin" => {
                if optional {
                    self.pin = None;
                    return true;
                }
                v.parse::<usize>().map(|p| self.pin = Some(p)).is_ok()
            }
            "zoom" => {
                if optional || v == "all" {
                    self.zoom = None;
                    return true;
                }
                match InclusiveRange::parse(v) {
                    Some(r) if r.first >= 0 => {
                        self.zoom = Some(r);
                        true
                    }
                    _ => false,
                }
            }
            "grid" => {
                if optional || v == "auto" {
                    self.grid = None;
                    return true;
                }
                GridShape::parse(v).map(|g| self.grid = Some(g)).is_some()
            }
            "opacity" => match v.parse::<f32>() {
                Ok(o) if (0.0..=1.0).contains(&o) => {
                    self.opacity = o;
                    true
                }
                _ => false,
            },
            "gridlines" => parse_bool(v).map(|b| self.gridlines = b).is_some(),
            _ => false,
        }
    }

    /// Bring every field in line with the cube: names that it does not hold fall back to the
    /// defaults, the zoom window is clamped to the prompt's positions, `prompt` is dropped when
    /// the cube has a single prompt.
    pub fn validated(mut self, cube: &Cube) -> Self {
        let d = ViewState::for_cube(cube);
        if let StepSelection::One(n) = self.step {
            if cube.step_index(n).is_none() {
                self.step = d.step;
            }
        }
        if cube.variant_index(&self.variant).is_none() {
            self.variant = d.variant.clone();
        }
        if cube.metric_index(&self.metric).is_none() {
            self.metric = d.metric.clone();
        }
        if cube.layer_index(self.layer).is_none() {
            self.layer = d.layer;
        }
        if cube.prompts.len() <= 1 {
            self.prompt = None;
        } else if self.prompt.as_deref().is_none_or(|p| cube.prompt_index(p).is_none()) {
            self.prompt = d.prompt.clone();
        }
        let n = cube.prompts.get(self.prompt_index(cube)).map_or(0, |p| p.n_positions());
        if let Some(z) = self.zoom {
            let last = (n as i64 - 1).max(0);
            let first = z.first.clamp(0, last);
            let end = z.last.clamp(first, last);
            self.zoom = if first == 0 && end == last {
                None
            } else {
                Some(InclusiveRange { first, last: end })
            };
        }
        if self.pin.is_some_and(|p| p >= n) {
            self.pin = None;
        }
        self
    }

    /// Write the hash (without the leading `#`): every key with a value, in [`HASH_KEYS`] order;
    /// optional keys (`layers`, `prompt`, `clip`, `pin`, `zoom`, `grid`) only when set.
    pub fn to_hash(&self) -> String {
        self.to_pairs()
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The `(key, value)` pairs of the hash, unencoded.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut p: Vec<(&'static str, String)> = vec![
            ("view", self.view.as_str().to_string()),
            (
                "step",
                match self.step {
                    StepSelection::All => "all".to_string(),
                    StepSelection::One(n) => n.to_string(),
                },
            ),
            ("variant", self.variant.clone()),
            ("metric", self.metric.clone()),
            ("layer", self.layer.to_string()),
        ];
        if let Some(l) = self.layers {
            p.push(("layers", l.to_string()));
        }
        if let Some(pr) = &self.prompt {
            p.push(("prompt", pr.clone()));
        }
        p.push(("norm", self.norm.as_str().to_string()));
        p.push(("scale", self.scale.as_str().to_string()));
        if let Some(c) = self.clip_percentile {
            p.push(("clip", c.to_string()));
        }
        p.push(("exclude0", on_off(self.exclude0).to_string()));
        p.push(("heatmap", on_off(self.heatmap).to_string()));
        p.push(("values", on_off(self.values).to_string()));
        p.push(("cmap", self.cmap.as_str().to_string()));
        p.push(("share", on_off(self.share).to_string()));
        if let Some(pin) = self.pin {
            p.push(("pin", pin.to_string()));
        }
        if let Some(z) = self.zoom {
            p.push(("zoom", z.to_string()));
        }
        if let Some(g) = self.grid {
            p.push(("grid", g.to_string()));
        }
        p.push(("opacity", self.opacity.to_string()));
        p.push(("gridlines", on_off(self.gridlines).to_string()));
        p
    }

    /// Index of the selected prompt (0 when unset or unknown).
    pub fn prompt_index(&self, cube: &Cube) -> usize {
        self.prompt
            .as_deref()
            .and_then(|p| cube.prompt_index(p))
            .unwrap_or(0)
    }

    /// Indexes of the selected steps: one, or all of them for `step=all`.
    pub fn step_indexes(&self, cube: &Cube) -> Vec<usize> {
        match self.step {
            StepSelection::All => (0..cube.steps.len()).collect(),
            StepSelection::One(n) => cube.step_index(n).into_iter().collect(),
        }
    }

    /// ← / →: the previous / next layer (`delta` = -1 / +1), stopping at the ends.
    pub fn shift_layer(&self, cube: &Cube, delta: isize) -> Self {
        let mut s = self.clone();
        s.layer = shift_in(&cube.layers, self.layer, delta).unwrap_or(self.layer);
        s
    }

    /// ↑ / ↓: the previous / next step, stopping at the ends. From `all`, ↓ goes to the first
    /// step and ↑ to the last.
    pub fn shift_step(&self, cube: &Cube, delta: isize) -> Self {
        let mut s = self.clone();
        s.step = match self.step {
            StepSelection::All => {
                let pick = if delta >= 0 { cube.steps.first() } else { cube.steps.last() };
                pick.map_or(StepSelection::All, |&n| StepSelection::One(n))
            }
            StepSelection::One(n) => {
                StepSelection::One(shift_in(&cube.steps, n, delta).unwrap_or(n))
            }
        };
        s
    }

    /// M: the next metric (cycling).
    pub fn next_metric(&self, cube: &Cube) -> Self {
        let names: Vec<&str> = cube.metrics.iter().map(|m| m.name.as_str()).collect();
        let mut s = self.clone();
        s.metric = cycle(&names, &self.metric).unwrap_or(&self.metric).to_string();
        s
    }

    /// V: the next variant (cycling).
    pub fn next_variant(&self, cube: &Cube) -> Self {
        let names: Vec<&str> = cube.variants.iter().map(|v| v.as_str()).collect();
        let mut s = self.clone();
        s.variant = cycle(&names, &self.variant).unwrap_or(&self.variant).to_string();
        s
    }

    /// S: the next scaling (linear → sqrt → log → percentile).
    pub fn next_scale(&self) -> Self {
        let mut s = self.clone();
        s.scale = self.scale.next();
        s
    }

    /// G: the next view (layers → grid → heads).
    pub fn next_view(&self) -> Self {
        let mut s = self.clone();
        s.view = self.view.next();
        s
    }
}

/// The value `delta` places away from `current` in the sorted `values`, clamped to the ends.
fn shift_in(values: &[i64], current: i64, delta: isize) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let i = match values.binary_search(&current) {
        Ok(i) => i as isize,
        Err(i) => i as isize - if delta > 0 { 1 } else { 0 },
    };
    let j = (i + delta).clamp(0, values.len() as isize - 1);
    Some(values[j as usize])
}

fn cycle<'a>(names: &[&'a str], current: &str) -> Option<&'a str> {
    if names.is_empty() {
        return None;
    }
    let i = names.iter().position(|n| *n == current).map_or(0, |i| i + 1);
    Some(names[i % names.len()])
}

impl Serialize for ViewState {
    /// A map with the hash keys; numbers and booleans as JSON numbers / booleans, the rest as
    /// strings (`step` is a number, or `"all"`).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let pairs = self.to_pairs();
        let mut map = serializer.serialize_map(Some(pairs.len()))?;
        for (k, v) in &pairs {
            match *k {
                "layer" | "pin" => map.serialize_entry(k, &v.parse::<i64>().ok())?,
                "step" if v != "all" => map.serialize_entry(k, &v.parse::<i64>().ok())?,
                "clip" | "opacity" => map.serialize_entry(k, &v.parse::<f64>().ok())?,
                "exclude0" | "heatmap" | "values" | "share" | "gridlines" => {
                    map.serialize_entry(k, &(v == "on"))?
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ViewState {
    /// Lenient, like [`ViewState::from_hash`] but without a cube: starts from
    /// [`ViewState::default`]; call [`ViewState::validated`] afterwards.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut s = ViewState::default();
        for (k, v) in map {
            let text = match v {
                serde_json::Value::String(t) => t,
                serde_json::Value::Bool(b) => on_off(b).to_string(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            s.apply(&k, &text, None);
        }
        Ok(s)
    }
}
