//! Deterministic, realistic synthetic results: the demo, `mask-impact generate` and the
//! benchmarks use it.
//!
//! The data mimics a vision-language prompt: a chat template, an image block of `<|image_pad|>`
//! tokens laid out as a patch grid, a question. Position 0 is an attention sink with values two
//! orders of magnitude above the rest; impact grows with depth; image patches form smooth blobs
//! (the "object" in the picture); a few heads carry most of the effect. Values are rounded to 4
//! decimals and stored as `f32`, as the Python writer does.
//!
//! ```
//! use mask_impact::synth::{Synth, SynthConfig};
//! let config = SynthConfig { steps: 1, layers: 2, heads: 0, ..SynthConfig::demo() };
//! let rows: usize = Synth::new(config.clone()).map(|b| b.num_rows()).sum();
//! assert_eq!(rows, config.rows());
//! ```

use std::sync::Arc;

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub steps: usize,
    pub layers: usize,
    /// Token positions per prompt (text and image tokens together).
    pub positions: usize,
    /// Number of `Head_i` variants besides `Full` and `Attn`.
    pub heads: usize,
    /// Image patch grid (rows, columns); `None` for a text-only prompt.
    pub image_grid: Option<(usize, usize)>,
    /// Number of prompts (several add a `prompt_name` column).
    pub prompts: usize,
    pub seed: u64,
    /// Rows per record batch.
    pub batch_rows: usize,
}

impl SynthConfig {
    /// The viewer's built-in demo: 2 steps × 36 layers × 300 positions (16×16 image) × 10
    /// variants.
    pub fn demo() -> SynthConfig {
        SynthConfig {
            steps: 2,
            layers: 36,
            positions: 300,
            heads: 8,
            image_grid: Some((16, 16)),
            prompts: 1,
            seed: 7,
            batch_rows: 64 * 1024,
        }
    }

    /// The seed note's data: 50 steps × 36 layers × 1053 positions (32×32 image) × 2 variants =
    /// 3.8M rows.
    pub fn seed_scale() -> SynthConfig {
        SynthConfig {
            steps: 50,
            layers: 36,
            positions: 1053,
            heads: 0,
            image_grid: Some((32, 32)),
            prompts: 1,
            seed: 1,
            batch_rows: 64 * 1024,
        }
    }

    /// Number of variants (`Full`, `Attn` and the heads).
    pub fn n_variants(&self) -> usize {
        2 + self.heads
    }

    /// Number of rows it generates.
    pub fn rows(&self) -> usize {
        self.prompts * self.steps * self.layers * self.positions * self.n_variants()
    }

    /// The variant names in order.
    pub fn variants(&self) -> Vec<String> {
        let mut v = vec!["Full".to_string(), "Attn".to_string()];
        v.extend((0..self.heads).map(|h| format!("Head_{h}")));
        v
    }
}

/// SplitMix64: a small, good, deterministic hash for noise.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from a key.
fn unit(seed: u64, key: &[u64]) -> f64 {
    let h = key.iter().fold(mix(seed), |h, &k| mix(h ^ k));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const QUESTION: [&str; 14] = [
    "What", " color", " is", " the", " person", "'s", " hair", "?", " Answer", " in", " one",
    " word", ".", "\n",
];

/// The token texts of one prompt, and where its image block starts.
fn prompt_tokens(config: &SynthConfig) -> (Vec<String>, usize, usize) {
    let n_image = config.image_grid.map_or(0, |(r, c)| r * c);
    let mut t: Vec<String> = ["<|im_start|>", "system", "\n", "You are a helpful assistant.", "<|im_end|>", "\n", "<|im_start|>", "user", "\n"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let image_start;
    if n_image > 0 {
        t.push("<|vision_start|>".into());
        image_start = t.len();
        t.extend((0..n_image).map(|_| "<|image_pad|>".to_string()));
        t.push("<|vision_end|>".into());
    } else {
        image_start = t.len();
    }
    let mut q = 0;
    while t.len() + 5 < config.positions {
        t.push(QUESTION[q % QUESTION.len()].to_string());
        q += 1;
    }
    t.extend(["<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"].iter().map(|s| s.to_string()));
    t.truncate(config.positions);
    (t, image_start, n_image)
}

/// Iterator over the record batches of a synthetic result set, ordered by prompt, step, layer,
/// position, variant (as the Python writer orders them).
pub struct Synth {
    config: SynthConfig,
    schema: SchemaRef,
    tokens: Vec<String>,
    image_start: usize,
    n_image: usize,
    /// Blob centres and widths of the image "object", per prompt.
    blobs: Vec<Vec<(f64, f64, f64, f64)>>,
    /// Per-head weight.
    head_weight: Vec<f64>,
    next_row: usize,
}

impl Synth {
    pub fn new(config: SynthConfig) -> Synth {
        let (tokens, image_start, n_image) = prompt_tokens(&config);
        let seed = config.seed;
        let blobs = (0..config.prompts.max(1))
            .map(|p| {
                (0..3)
                    .map(|b| {
                        let k = [p as u64, b as u64];
                        (
                            0.2 + 0.6 * unit(seed, &[k[0], k[1], 1]),
                            0.2 + 0.6 * unit(seed, &[k[0], k[1], 2]),
                            0.08 + 0.15 * unit(seed, &[k[0], k[1], 3]),
                            0.5 + unit(seed, &[k[0], k[1], 4]),
                        )
                    })
                    .collect()
            })
            .collect();
        let head_weight = (0..config.heads)
            .map(|h| {
                let u = unit(seed, &[h as u64, 99]);
                // A few heads carry most of the effect.
                0.05 + 0.9 * u.powi(4)
            })
            .collect();
        let mut fields = vec![
            Field::new("generation_step", DataType::Int64, false),
            Field::new("layer", DataType::Int64, false),
            Field::new("token_masked", dict_type(), false),
            Field::new("token_position", DataType::Int64, false),
            Field::new("variant", dict_type(), false),
            Field::new("l2_distance", DataType::Float32, true),
            Field::new("cosine_distance", DataType::Float32, true),
        ];
        if config.prompts > 1 {
            fields.push(Field::new("prompt_name", dict_type(), false));
            fields.push(Field::new("config_prompt", dict_type(), false));
        }
        Synth {
            schema: Arc::new(Schema::new(fields)),
            config,
            tokens,
            image_start,
            n_image,
            blobs,
            head_weight,
            next_row: 0,
        }
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The token texts of each position.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The l2 and cosine values of one cell.
    fn values(&self, prompt: usize, step: usize, layer: usize, position: usize, variant: usize) -> (f32, f32) {
        let c = &self.config;
        let seed = c.seed;
        let depth = (layer as f64 + 1.0) / c.layers.max(1) as f64;
        let noise = unit(seed, &[prompt as u64, step as u64, layer as u64, position as u64, variant as u64]);
        let full = if position == 0 {
            // The attention sink.
            600.0 + 900.0 * depth + 150.0 * noise
        } else {
            let base = if position >= self.image_start && position < self.image_start + self.n_image {
                let (rows, cols) = c.image_grid.unwrap_or((1, 1));
                let k = position - self.image_start;
                let (y, x) = ((k / cols) as f64 / rows as f64, (k % cols) as f64 / cols as f64);
                let blob: f64 = self.blobs[prompt % self.blobs.len()]
                    .iter()
                    .map(|&(cy, cx, w, a)| a * (-((y - cy).powi(2) + (x - cx).powi(2)) / (2.0 * w * w)).exp())
                    .sum();
                0.6 + 6.0 * blob
            } else {
                let t = &self.tokens[position];
                let keyword = [" hair", " color", "?", "<|vision_end|>"].contains(&t.as_str());
                if keyword {
                    5.0 + 3.0 * unit(seed, &[position as u64, 7])
                } else {
                    0.8 + 2.0 * unit(seed, &[position as u64, 8])
                }
            };
            // Deeper layers move the hidden state more; later steps a little less.
            let step_factor = 1.0 - 0.3 * (step as f64 / c.steps.max(1) as f64);
            base * (0.3 + 3.0 * depth.powf(1.5)) * step_factor * (0.85 + 0.3 * noise)
        };
        let scale = match variant {
            0 => 1.0,
            1 => 0.55 + 0.1 * noise,
            h => self.head_weight[h - 2] * (0.7 + 0.6 * noise),
        };
        let l2 = full * scale;
        let cosine = if position == 0 {
            0.5 + 0.4 * noise
        } else {
            (l2 / (l2 + 60.0)).min(1.0) * 0.8 + 0.01 * noise
        };
        let round = |v: f64| ((v * 1e4).round() / 1e4) as f32;
        (round(l2), round(cosine))
    }
}

fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

impl Iterator for Synth {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        let c = &self.config;
        let total = c.rows();
        if self.next_row >= total {
            return None;
        }
        let end = (self.next_row + c.batch_rows.max(1)).min(total);
        let n = end - self.next_row;
        let nv = c.n_variants();
        let variants = c.variants();
        let mut step = Vec::with_capacity(n);
        let mut layer = Vec::with_capacity(n);
        let mut position = Vec::with_capacity(n);
        let mut l2 = Vec::with_capacity(n);
        let mut cosine = Vec::with_capacity(n);
        let mut token = StringDictionaryBuilder::<Int32Type>::new();
        let mut variant = StringDictionaryBuilder::<Int32Type>::new();
        let mut prompt_name = StringDictionaryBuilder::<Int32Type>::new();
        let mut config_prompt = StringDictionaryBuilder::<Int32Type>::new();
        for row in self.next_row..end {
            let mut r = row;
            let v = r % nv;
            r /= nv;
            let pos = r % c.positions;
            r /= c.positions;
            let l = r % c.layers;
            r /= c.layers;
            let s = r % c.steps;
            let p = r / c.steps;
            let (a, b) = self.values(p, s, l, pos, v);
            step.push(s as i64);
            layer.push(l as i64);
            position.push(pos as i64);
            l2.push(a);
            cosine.push(b);
            token.append_value(&self.tokens[pos]);
            variant.append_value(&variants[v]);
            if c.prompts > 1 {
                prompt_name.append_value(format!("prompt_{p}"));
                config_prompt.append_value(format!("Synthetic prompt number {p}: what color is the person's hair?"));
            }
        }
        self.next_row = end;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(step)),
            Arc::new(Int64Array::from(layer)),
            Arc::new(token.finish()),
            Arc::new(Int64Array::from(position)),
            Arc::new(variant.finish()),
            Arc::new(Float32Array::from(l2)),
            Arc::new(Float32Array::from(cosine)),
        ];
        if c.prompts > 1 {
            columns.push(Arc::new(prompt_name.finish()));
            columns.push(Arc::new(config_prompt.finish()));
        }
        Some(RecordBatch::try_new(self.schema.clone(), columns).expect("synthetic batch matches its schema"))
    }
}

/// Build the cube of a synthetic result set directly (the demo).
pub fn cube(config: SynthConfig, name: &str) -> Result<crate::cube::Cube, crate::cube::CubeError> {
    let synth = Synth::new(config);
    let mut builder = crate::cube::CubeBuilder::new();
    builder.begin_source(name, &synth.schema())?;
    for batch in synth {
        builder.push_batch(&batch)?;
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_shape_and_structure() {
        let config = SynthConfig::demo();
        let cube = cube(config.clone(), "demo").unwrap();
        assert_eq!(cube.steps, [0, 1]);
        assert_eq!(cube.layers.len(), 36);
        assert_eq!(cube.variants.len(), 10);
        assert_eq!(cube.variants[2], "Head_0");
        let p = &cube.prompts[0];
        assert_eq!(p.n_positions(), 300);
        let image = (0..300).filter(|&i| p.token(i) == Some("<|image_pad|>")).count();
        assert_eq!(image, 256);
        // The sink dominates every row.
        let l2 = cube.metric_index("l2_distance").unwrap();
        for layer in 0..36 {
            let row = cube.row(l2, cube.cell(0, 0, 0, layer));
            let rest = row[1..].iter().cloned().fold(f32::MIN, f32::max);
            assert!(row[0] > 10.0 * rest, "layer {layer}: sink {} vs {rest}", row[0]);
        }
        // Values are rounded to 4 decimals.
        let v = cube.value(l2, cube.cell(0, 1, 3, 20), 50).unwrap() as f64;
        assert!((v * 1e4 - (v * 1e4).round()).abs() < 0.05, "{v}");
        // Deterministic.
        let again = super::cube(config, "demo").unwrap();
        assert_eq!(again.metrics[0].values, cube.metrics[0].values);
    }
}
