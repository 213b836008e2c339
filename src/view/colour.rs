//! Colour maps (intensity → RGBA) and the colourbar description.

use super::slice::{apply_scale, intensity_of, Matrix};
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

/// `y.round()` for `0 ≤ y < 2^23` (halves away from zero) without a libm call (`roundf` is a
/// function call on baseline x86-64 and in wasm): the fraction `y - trunc(y)` is exact there.
#[inline]
fn round_small(y: f32) -> usize {
    let k = y as usize;
    if y - k as f32 >= 0.5 { k + 1 } else { k }
}

/// The level (`0..=20`) of [`ColourMap::Reds`] for an intensity: `round(t · 20)`.
pub fn reds_level(t: f32) -> usize {
    round_small(t.clamp(0.0, 1.0) * (REDS_LEVELS - 1) as f32)
}

/// Colour of level `k` (`0..=20`) of the original white → red scale: `rgb(255, g, g)` with
/// `g = round(255 · (20 − k) / 20)`: level 0 white, level 10 `rgb(255,128,128)`, level 20 red.
pub fn reds_colour(level: usize) -> Rgba {
    let k = level.min(REDS_LEVELS - 1) as f32;
    let g = (255.0 * (20.0 - k) / 20.0).round() as u8;
    [255, g, g, 255]
}

/// Steps of the continuous maps (viridis, magma, diverging) over their range: a colour is
/// looked up at the nearest of `0, 1/1024, …, 1` (every stop lies on one), so a
/// [`Palette`] can hold every colour in a table.
pub const CONTINUOUS_STEPS: usize = 1024;

/// Index (`0..=CONTINUOUS_STEPS`) of a continuous map's colour for `u` in `[0, 1]`.
#[inline]
fn continuous_index(u: f32) -> usize {
    round_small(u.clamp(0.0, 1.0) * CONTINUOUS_STEPS as f32)
}

impl ColourMap {
    /// Colour of an intensity (`[0, 1]`, or `[-1, 1]` for signed data); NaN → [`NO_DATA`].
    /// Sequential maps show negative intensities as 0; the diverging map shows the sign.
    /// Reds has 21 levels ([`reds_level`]); the other maps are sampled at
    /// [`CONTINUOUS_STEPS`] + 1 points.
    pub fn colour(self, t: f32) -> Rgba {
        if t.is_nan() {
            return NO_DATA;
        }
        match self {
            ColourMap::Reds => reds_colour(reds_level(t)),
            ColourMap::Viridis | ColourMap::Magma | ColourMap::Diverging => {
                self.continuous(continuous_index(self.unit(t)))
            }
        }
    }

    /// Position along a continuous map's range of an intensity.
    #[inline]
    fn unit(self, t: f32) -> f32 {
        match self {
            ColourMap::Diverging => (t.clamp(-1.0, 1.0) + 1.0) / 2.0,
            _ => t,
        }
    }

    /// Colour number `i` (`0..=CONTINUOUS_STEPS`) of a continuous map.
    fn continuous(self, i: usize) -> Rgba {
        let u = i as f32 / CONTINUOUS_STEPS as f32;
        match self {
            ColourMap::Reds => reds_colour(reds_level(u)),
            ColourMap::Viridis => lerp_stops(&VIRIDIS, u),
            ColourMap::Magma => lerp_stops(&MAGMA, u),
            ColourMap::Diverging => lerp_stops(&DIVERGING, u),
        }
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

/// Colours of cells for painting: [`Matrix::relative`] values → RGBA through the scale and
/// colour map without floating-point maths per cell.
///
/// Every colour is precomputed (21 Reds levels, or the continuous map's table), and so is the
/// colour index of each bucket of relative values: a bucket is the values in `[2^-24, 1]` that
/// share their exponent and top mantissa bits (10 bits; 5 for the 21 Reds levels), so that at
/// most one colour step lies inside a bucket for every map and scale (found by bisection with
/// the exact formula; a bucket with more falls back to the formula). A lookup is then one
/// bucket read and one comparison. Gives exactly `cmap.colour(intensity_of(scale, r))` for
/// every `r` (the scales are monotone), [`NO_DATA`] for NaN, [`PLAIN`] for data when the
/// heatmap is off.
#[derive(Debug, Clone)]
pub struct Palette {
    cmap: ColourMap,
    scale: Scale,
    heatmap: bool,
    /// The colours, by index.
    table: Vec<Rgba>,
    /// Per bucket: the smallest value of the bucket with the next colour index (+∞ when none,
    /// NaN when the bucket holds several steps) and the colour index at the bucket's start.
    buckets: Vec<(f32, u16)>,
    /// Mantissa bits dropped to find a value's bucket.
    shift: u32,
    /// Index of values in `[0, 2^-24)` when constant there.
    small: Option<u16>,
    /// Index of values ≥ 1.
    one: u16,
}

/// Smallest relative value covered by the buckets (2^-24).
const BUCKET_MIN_BITS: u32 = 0x3380_0000;

impl Palette {
    /// The palette of a colour map and scale; `heatmap` off paints every cell with data
    /// [`PLAIN`].
    pub fn new(cmap: ColourMap, scale: Scale, heatmap: bool) -> Palette {
        let table: Vec<Rgba> = match cmap {
            ColourMap::Reds => (0..REDS_LEVELS).map(reds_colour).collect(),
            _ => (0..=CONTINUOUS_STEPS).map(|i| cmap.continuous(i)).collect(),
        };
        // Buckets of 2^-10 relative width hold at most one step of 1025 colours (2^-5: of 21),
        // for every scale (the steepest, log, rises by less than 0.15 × the relative width).
        let shift = if cmap == ColourMap::Reds { 23 - 5 } else { 23 - 10 };
        let p = Palette { cmap, scale, heatmap, table, buckets: Vec::new(), shift, small: None, one: 0 };
        if !heatmap {
            return p;
        }
        let one_bits = 1.0f32.to_bits();
        let n_buckets = ((one_bits - BUCKET_MIN_BITS) >> shift) as usize;
        let mut buckets = Vec::with_capacity(n_buckets);
        let idx = |bits: u32| p.direct_index(f32::from_bits(bits)) as u16;
        for b in 0..n_buckets as u32 {
            let lo = BUCKET_MIN_BITS + (b << shift);
            let hi = lo + (1 << shift) - 1;
            let (i_lo, i_hi) = (idx(lo), idx(hi));
            let step = if i_hi == i_lo {
                f32::INFINITY
            } else if i_hi == i_lo + 1 {
                // Smallest bits with the higher index.
                let (mut a, mut z) = (lo, hi);
                while a < z {
                    let m = a + (z - a) / 2;
                    if idx(m) >= i_hi { z = m } else { a = m + 1 }
                }
                f32::from_bits(a)
            } else {
                // More than one step in the bucket (not expected): look such values up
                // directly.
                f32::NAN
            };
            buckets.push((step, i_lo));
        }
        let (i0, i_min) = (idx(0), idx(BUCKET_MIN_BITS - 1));
        let small = (i0 == i_min).then_some(i0);
        let one = idx(one_bits);
        Palette { buckets, small, one, ..p }
    }

    /// [`Palette::new`], kept for the next frames (per thread: one per map and scale used).
    pub fn shared(cmap: ColourMap, scale: Scale, heatmap: bool) -> std::rc::Rc<Palette> {
        use std::cell::RefCell;
        use std::rc::Rc;
        thread_local! {
            static PALETTES: RefCell<Vec<Rc<Palette>>> = const { RefCell::new(Vec::new()) };
        }
        PALETTES.with(|cell| {
            let mut all = cell.borrow_mut();
            if let Some(p) = all.iter().find(|p| p.cmap == cmap && p.scale == scale && p.heatmap == heatmap) {
                return Rc::clone(p);
            }
            let p = Rc::new(Palette::new(cmap, scale, heatmap));
            all.push(Rc::clone(&p));
            p
        })
    }

    /// Colour index of a relative value with data, by the formula.
    fn direct_index(&self, r: f32) -> usize {
        let t = intensity_of(self.scale, r);
        match self.cmap {
            ColourMap::Reds => reds_level(t),
            _ => continuous_index(self.cmap.unit(t)),
        }
    }

    /// Colour of a relative value (see [`Matrix::relative`]).
    #[inline]
    pub fn colour(&self, r: f32) -> Rgba {
        if r.is_nan() {
            return NO_DATA;
        }
        if !self.heatmap {
            return PLAIN;
        }
        let i = if r >= 1.0 {
            self.one as usize
        } else if r >= f32::from_bits(BUCKET_MIN_BITS) {
            let b = ((r.to_bits() - BUCKET_MIN_BITS) >> self.shift) as usize;
            match self.buckets.get(b) {
                Some(&(step, base)) if !step.is_nan() => base as usize + usize::from(r >= step),
                _ => self.direct_index(r),
            }
        } else if let (Some(i), true) = (self.small, r >= 0.0) {
            i as usize
        } else {
            self.direct_index(r)
        };
        self.table[i.min(self.table.len() - 1)]
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
