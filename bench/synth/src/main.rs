//! `bench-synth STEPS LAYERS POSITIONS HEADS GRID SEED OUT.parquet`: writes the synthetic result
//! set of `mask_impact::synth` (GRID = side of the square image patch grid, 0 for none) to a
//! snappy Parquet file. The benchmark then applies the Python writer's recipe (pandas, float32,
//! categories, zstd) to it, so the files it times are in the users' real format.

use std::fs::File;

use anyhow::{bail, Context, Result};
use mask_impact::synth::{Synth, SynthConfig};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 7 {
        bail!("usage: bench-synth STEPS LAYERS POSITIONS HEADS GRID SEED OUT.parquet");
    }
    let number = |i: usize| -> Result<usize> {
        args[i].parse().with_context(|| format!("argument {} ({:?}) is not a number", i + 1, args[i]))
    };
    let grid_side = number(4)?;
    let config = SynthConfig {
        steps: number(0)?,
        layers: number(1)?,
        positions: number(2)?,
        heads: number(3)?,
        image_grid: (grid_side > 0).then_some((grid_side, grid_side)),
        prompts: 1,
        seed: number(5)? as u64,
        batch_rows: 256 * 1024,
    };
    let out_path = &args[6];
    let synth = Synth::new(config.clone());
    let file = File::create(out_path).with_context(|| format!("cannot create {out_path}"))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, synth.schema(), Some(props))?;
    let mut rows = 0usize;
    for batch in synth {
        rows += batch.num_rows();
        writer.write(&batch)?;
    }
    writer.close()?;
    eprintln!("bench-synth: {rows} rows ({} expected) -> {out_path}", config.rows());
    Ok(())
}
