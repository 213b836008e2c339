//! Colour maps (intensity → RGBA) and the colourbar description.

use super::slice::{apply_scale, Matrix};
use super::state::{ColourMap, Normalisation, Scale, ViewKind, ViewState};

/// An RGBA colour, 8 bits per channel.
pub type Rgba = [u8; 4];

/// Colour of a cell without data: light grey, never the colour of any value.
pub const NO_DATA: Rgba = [214, 214, 214, 255];
/// Colour of a cell with data when the heatmap is off.
pub const PLAIN: Rgba = [255, 255, 255, 255];
/// Page background of the raster.
pub const BACKGROUND: Rgba = [255, 255, 255, 255];

/// Number of discrete levels of [`ColourMap::Reds`] (the original viewer).
pub const REDS_LEVELS: usize = 21;

// Matplotlib colour maps sampled at 0, 1/8, …, 1 (linear interpolation in between).
const VIRIDIS: [[u8; 3]; 9] = [
    [0x44, 0x01, 0x54], [0x48, 0x28, 0x78], [0x3e, 0x49, 0x89], [0x31, 0x68, 0x8e], [0x26, 0x82, 0x8e],
    [0x1f, 0x9e, 0x89], [0x35, 0xb7, 0x79], [0x6e, 0xce, 0x58], [0xfd, 0xe7, 0x25],
];
const MAGMA: [[u8; 3]; 9] = [
    [0x00, 0x00, 0x04], [0x1c, 0x10, 0x44], [0x4f, 0x12, 0x7b], [0x81, 0x25, 0x81], [0xb5, 0x36, 0x7a],
    [0xe5, 0x50, 0x64], [0xfb, 0x88, 0x61], [0xfe, 0xc2, 0x87], [0xfc, 0xfd, 0xbf],
];
// ColorBrewer RdBu (reversed): blue for -1, near-white for 0, red for +1.
const DIVERGING: [[u8; 3]; 5] = [
    [0x21, 0x66, 0xac], [0x92, 0xc5, 0xde], [0xf7, 0xf7, 0xf7], [0xf4, 0xa5, 0x82], [0xb2, 0x18, 0x2b],
];

fn lerp_stops(stops: &[[u8; 3]], t: f32) -> Rgba {
    let t = t.clamp(0.0, 1.0);
    let x = t * (stops.len() - 1) as f32;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f32;
    let a = stops[i];
    let b = stops[i + 1];
    let mix = |k: usize| (a[k] as f32 + (b[k] as f32 - a[k] as f32) * f).round() as u8;
    [mix(0), mix(1), mix(2), 255]
}

/// The level (`0..=20`) of [`ColourMap::Reds`] for an intensity: `round(t · 20)`.
pub fn reds_level(t: f32) -> usize {
    (t.clamp(0.0, 1.0) * (REDS_LEVELS - 1) as f32).round() as usize
}

/// Colour of level `k` (`0..=20`) of the original white → red scale: `rgb(255, g, g)` with
/// `g = round(255 · (20 − k) / 20)`: level 0 white, level 10 `rgb(255,128,128)`, level 20 red.
pub fn reds_colour(level: usize) -> Rgba {
    let k = level.min(REDS_LEVELS - 1) as f32;
    let g = (255.0 * (20.0 - k) / 20.0).round() as u8;
    [255, g, g, 255]
}

impl ColourMap {
    /// Colour of an intensity (`[0, 1]`, or `[-1, 1]` for signed data); NaN → [`NO_DATA`].
    /// Sequential maps show negative intensities as 0; the diverging map shows the sign.
    pub fn colour(self, t: f32) -> Rgba {
        if t.is_nan() {
            return NO_DATA;
        }
        match self {
            ColourMap::Reds => reds_colour(reds_level(t)),
            ColourMap::Viridis => lerp_stops(&VIRIDIS, t),
            ColourMap::Magma => lerp_stops(&MAGMA, t),
            ColourMap::Diverging => lerp_stops(&DIVERGING, (t.clamp(-1.0, 1.0) + 1.0) / 2.0),
        }
    }

    /// A 256-entry lookup table for intensities `0..=1` (`i / 255`), for fast painting.
    pub fn lut(self) -> [Rgba; 256] {
        let mut lut = [[0u8; 4]; 256];
        for (i, c) in lut.iter_mut().enumerate() {
            *c = self.colour(i as f32 / 255.0);
        }
        lut
    }

    /// Black or white, whichever reads better on `background`.
    pub fn text_colour_on(background: Rgba) -> Rgba {
        let l = 0.299 * background[0] as f32 + 0.587 * background[1] as f32 + 0.114 * background[2] as f32;
        if l > 140.0 {
            [0, 0, 0, 255]
        } else {
            [255, 255, 255, 255]
        }
    }
}

/// One tick of the colourbar.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Where along the bar, 0 (left) ..= 1 (right).
    pub at: f32,
    /// Label (data units for global normalisation, fraction of the reference otherwise).
    pub label: String,
}

/// What the colourbar shows: the map, ticks and a caption naming metric, normalisation and
/// scale, e.g. `l2_distance · relative to row max (position 0 excluded) · sqrt`.
#[derive(Debug, Clone, PartialEq)]
pub struct Colourbar {
    pub cmap: ColourMap,
    /// Whether the bar spans `-1..1` (diverging map) instead of `0..1`.
    pub signed: bool,
    pub ticks: Vec<Tick>,
    pub caption: String,
}

/// Format a number compactly for labels (4 significant digits).
pub fn format_number(v: f32) -> String {
    if v.is_nan() {
        return "—".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

impl Colourbar {
    /// Describe the colourbar of a matrix drawn with `state`.
    pub fn describe(matrix: &Matrix, state: &ViewState, metric_name: &str) -> Colourbar {
        let relative = match (state.view, state.norm) {
            (ViewKind::Grid, _) => Some("relative to the max of image / text tokens"),
            (_, Normalisation::Row) => Some("relative to row max"),
            (_, Normalisation::Column) => Some("relative to column max"),
            (_, Normalisation::Global) => None,
        };
        let mut caption = metric_name.to_string();
        if state.view == ViewKind::Heads && state.share {
            caption.push_str(" / Full");
        }
        caption.push_str(" · ");
        caption.push_str(relative.unwrap_or("global scale"));
        if (state.view == ViewKind::Grid || state.norm != Normalisation::Column) && state.exclude0 {
            caption.push_str(if state.view == ViewKind::Grid {
                " (first image token and position 0 excluded)"
            } else {
                " (position 0 excluded)"
            });
        }
        caption.push_str(" · ");
        caption.push_str(state.scale.as_str());
        if let Some(p) = state.clip_percentile {
            if state.scale != Scale::Percentile {
                caption.push_str(&format!(" · clipped at p{}", format_number(p)));
            }
        }
        let fractions = [0.0f32, 0.25, 0.5, 0.75, 1.0];
        let ticks: Vec<Tick> = if state.scale == Scale::Percentile {
            fractions
                .iter()
                .map(|&f| Tick { at: f, label: format!("p{}", (f * 100.0).round()) })
                .collect()
        } else {
            let unit = if relative.is_some() { 1.0 } else { matrix.reference_max };
            fractions
                .iter()
                .map(|&f| {
                    let mut label = format_number(f * unit);
                    if relative.is_some() && f == 1.0 {
                        label.push_str(" × max");
                    }
                    Tick { at: apply_scale(state.scale, f), label }
                })
                .collect()
        };
        let signed = state.cmap == ColourMap::Diverging;
        let ticks = if signed {
            ticks.into_iter().map(|t| Tick { at: 0.5 + t.at / 2.0, label: t.label }).collect()
        } else {
            ticks
        };
        Colourbar { cmap: state.cmap, signed, ticks, caption }
    }

    /// Colour at `x` in `0..=1` along the bar.
    pub fn colour_at(&self, x: f32) -> Rgba {
        let t = if self.signed { x * 2.0 - 1.0 } else { x };
        self.cmap.colour(t)
    }
}
