//! The `mask-impact` command-line tool: convert, inspect, generate and render the results of
//! mask-impact experiments. The work is done by [`mask_impact::cli`]; this file parses the
//! command line, shows progress and prints the results.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use mask_impact::cli::convert::{self, ConvertOptions, FloatEncoding, Plan, RowGroups, RowOrder};
use mask_impact::cli::text::{CsvWriter, JsonWriter};
use mask_impact::cli::{inspect, load, size_on_disk, AtomicOutput, LoadProgress, Loaded};
use mask_impact::ingest::Format;
use mask_impact::synth::{Synth, SynthConfig};

#[derive(Parser)]
#[command(
    name = "mask-impact",
    version,
    about = "Convert, inspect, generate and render mask-impact experiment results",
    long_about = "Convert, inspect, generate and render mask-impact experiment results \
(one row per generation step × layer × masked token position × variant, with distance metrics).\n\n\
Reads Parquet (any writer), CSV, JSON records (pandas orient=\"records\") and JSON Lines."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert result files to Parquet tuned for this data and for the viewer.
    Convert(ConvertArgs),
    /// Show what a result file holds: schema, writer, sizes, axes, value ranges, problems.
    Inspect(InspectArgs),
    /// Write deterministic, realistic synthetic results.
    Generate(GenerateArgs),
    /// Draw the viewer's figure of a result file to PNG or SVG.
    Render(RenderArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum OrderArg {
    /// Whichever of layer-variant-position and position-variant-layer makes the first step
    /// smaller.
    Auto,
    /// Within a step: prompt → layer → variant → position (the variants of a layer together).
    LayerVariantPosition,
    /// Within a step: prompt → variant → layer → position (one heatmap row after another).
    VariantLayerPosition,
    /// Within a step: prompt → layer → position → variant (the Python writer's order).
    LayerPositionVariant,
    /// Within a step: prompt → position → variant → layer (the layers of a token together).
    PositionVariantLayer,
}

#[derive(Clone, Copy, ValueEnum)]
enum RowGroupsArg {
    /// Whichever of per-step and shared makes the first two steps smaller.
    Auto,
    /// One row group per generation step.
    PerStep,
    /// Whole consecutive steps share row groups of up to --row-group-rows rows.
    Shared,
}

#[derive(Clone, Copy, ValueEnum)]
enum FloatEncodingArg {
    /// BYTE_STREAM_SPLIT.
    ByteStreamSplit,
    /// Dictionary, falling back to plain.
    Dictionary,
    /// Plain.
    Plain,
}

#[derive(Clone, Copy, ValueEnum)]
enum PartitionBy {
    #[value(name = "generation_step")]
    GenerationStep,
}

#[derive(clap::Args)]
struct ConvertArgs {
    /// Input files: Parquet, CSV, JSON records or JSON Lines (CSV and JSON also gzip- or
    /// zstd-compressed: `results.csv.gz`); or folders of them, such as a dataset partitioned
    /// by step (`generation_step=3/part-0.parquet`: the step comes from the folder).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file (several inputs are merged into it), or an existing folder (each input is
    /// converted into it). Default: each input beside itself with the extension `.parquet`.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Round metrics to this many decimals.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=9))]
    decimals: u32,
    /// Keep metric values as read (no rounding).
    #[arg(long, conflicts_with = "decimals")]
    no_round: bool,
    /// zstd compression level (1-22). The default, 7, writes result files within 0.6% of
    /// level 9's size in about two thirds of its time. A column chunk whose first data page
    /// (its first 256 KiB) this level shrinks by under 1% more than level 1 (a noisy metric) has
    /// its data pages written at level 1 (stored when level 1 saves under 2%) and its dictionary
    /// page at level 3 at most.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(i32).range(1..=22))]
    level: i32,
    /// Row order within each generation step.
    #[arg(long, value_enum, default_value = "auto")]
    order: OrderArg,
    /// How rows are cut into row groups (always at generation-step boundaries).
    #[arg(long, value_enum, default_value = "auto")]
    row_groups: RowGroupsArg,
    /// Most rows in a shared row group.
    #[arg(long, default_value_t = convert::ROW_GROUP_ROWS)]
    row_group_rows: usize,
    /// Encoding of the metric columns.
    #[arg(long, value_enum, default_value = "dictionary")]
    float_encoding: FloatEncodingArg,
    /// Write a Hive-style folder OUT/generation_step=K/part-0.parquet.
    #[arg(long, value_enum)]
    partition_by: Option<PartitionBy>,
    /// Also write CSV (for spreadsheets) beside the Parquet output.
    #[arg(long)]
    csv: bool,
    /// Print the size table as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// The result file (Parquet, CSV or JSON), or a folder of them (a partitioned dataset).
    file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GenFormat {
    Parquet,
    Csv,
    Json,
    Jsonl,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Generation steps.
    #[arg(long, default_value_t = 2)]
    steps: usize,
    /// Layers.
    #[arg(long, default_value_t = 36)]
    layers: usize,
    /// Token positions per prompt (text and image tokens together).
    #[arg(long, default_value_t = 300)]
    positions: usize,
    /// Number of heads (variants Full, Attn, Head_0…Head_{N-1}), or a comma-separated list of
    /// variants such as `Full,Attn,Head_3`.
    #[arg(long, default_value = "8")]
    variants: String,
    /// Image patch grid ROWSxCOLS, or `none` for a text-only prompt.
    #[arg(long, default_value = "16x16")]
    image_grid: String,
    /// Number of prompts (more than one adds `prompt_name` and `config_prompt`).
    #[arg(long, default_value_t = 1)]
    prompts: usize,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Output format (default: from the extension of OUT).
    #[arg(long, value_enum)]
    format: Option<GenFormat>,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ViewArg {
    Layers,
    Grid,
    Heads,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// The result file, or a folder of them (a partitioned dataset).
    file: PathBuf,
    /// Generation step.
    #[arg(long)]
    step: Option<i64>,
    /// Variant (`Full`, `Attn`, `Head_3`…).
    #[arg(long)]
    variant: Option<String>,
    /// Metric column.
    #[arg(long)]
    metric: Option<String>,
    /// Figure: layers × positions, the image patch grid, or heads × positions.
    #[arg(long, value_enum, default_value = "layers")]
    view: ViewArg,
    /// Layer, for the grid and heads figures (default: the first layer).
    #[arg(long)]
    layer: Option<i64>,
    /// Output file, `.png` or `.svg`.
    #[arg(short, long)]
    output: PathBuf,
    /// Figure width in pixels.
    #[arg(long, default_value_t = 1600)]
    width: u32,
    /// Figure height in pixels.
    #[arg(long, default_value_t = 900)]
    height: u32,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

fn main() {
    // Output piped into a command that stops reading (`| head`) ends the program quietly, as
    // with other command-line tools, not in a panic (Rust ignores SIGPIPE).
    #[cfg(unix)]
    // SAFETY: sets the default action of one signal, before any other thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(a) => run_convert(a),
        Command::Inspect(a) => run_inspect(a),
        Command::Generate(a) => run_generate(a),
        Command::Render(a) => run_render(a),
    };
    if let Err(e) = result {
        let _ = std::io::stdout().flush();
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
fn progress_bar(total: u64, quiet: bool, bytes: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = if bytes {
        "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}"
    } else {
        "{spinner} {prefix} [{bar:30}] {human_pos}/{human_len} rows {per_sec:0} ETA {eta} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Read inputs with a progress bar of bytes and rows, metric values rounded to `decimals` as
/// they are read.
fn load_with_progress(inputs: &[PathBuf], decimals: Option<u32>, quiet: bool) -> Result<Loaded> {
    let bar = progress_bar(0, quiet, true);
    bar.set_prefix("reading");
    let mut last_rows = u64::MAX;
    let rounding = decimals.map(mask_impact::cube::Rounding::new);
    let loaded = load(inputs, rounding, |p: &LoadProgress| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_read);
        if p.rows != last_rows {
            last_rows = p.rows;
            bar.set_message(format!("{} rows", indicatif::HumanCount(p.rows)));
        }
    });
    bar.finish_and_clear();
    Ok(loaded?)
}

#[derive(Serialize)]
struct SizeRow {
    inputs: Vec<String>,
    input_bytes: u64,
    output: String,
    output_bytes: u64,
    /// input_bytes / output_bytes.
    ratio: f64,
    rows: u64,
    row_groups: usize,
    /// Row order within a step, as chosen.
    order: String,
    /// How row groups were cut, as chosen.
    row_group_layout: String,
    csv: Option<String>,
    csv_bytes: Option<u64>,
    /// Time to read the inputs (into the cube).
    read_seconds: f64,
    /// Most threads that decoded one input.
    decode_threads: usize,
    /// Time of the whole conversion (reading, choosing the layout, writing).
    seconds: f64,
    /// Rows of the inputs that are not in the output, and why (also printed to stderr).
    warnings: Vec<String>,
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn run_convert(args: ConvertArgs) -> Result<()> {
    let options = ConvertOptions {
        decimals: (!args.no_round).then_some(args.decimals),
        zstd_level: args.level,
        order: match args.order {
            OrderArg::Auto => None,
            OrderArg::VariantLayerPosition => Some(RowOrder::VariantLayerPosition),
            OrderArg::LayerVariantPosition => Some(RowOrder::LayerVariantPosition),
            OrderArg::LayerPositionVariant => Some(RowOrder::LayerPositionVariant),
            OrderArg::PositionVariantLayer => Some(RowOrder::PositionVariantLayer),
        },
        row_groups: match args.row_groups {
            RowGroupsArg::Auto => None,
            RowGroupsArg::PerStep => Some(RowGroups::PerStep),
            RowGroupsArg::Shared => Some(RowGroups::WholeSteps {
                max_rows: args.row_group_rows.max(1),
            }),
        },
        float_encoding: match args.float_encoding {
            FloatEncodingArg::ByteStreamSplit => FloatEncoding::ByteStreamSplit,
            FloatEncodingArg::Dictionary => FloatEncoding::Dictionary,
            FloatEncodingArg::Plain => FloatEncoding::Plain,
        },
        ..ConvertOptions::default()
    };
    let partitioned = args.partition_by.is_some();
    let out_name = |input: &Path, dir: Option<&Path>| -> PathBuf {
        let stem = input
            .file_stem()
            .map(|s| s.to_os_string())
            .unwrap_or_else(|| "output".into());
        let mut name = PathBuf::from(stem);
        if !partitioned {
            name.set_extension("parquet");
        }
        match dir {
            Some(d) => d.join(name),
            None => input.with_file_name(name),
        }
    };
    // (inputs, output) pairs.
    let jobs: Vec<(Vec<PathBuf>, PathBuf)> = match &args.output {
        Some(o) if o.is_dir() && !partitioned => args
            .inputs
            .iter()
            .map(|i| (vec![i.clone()], out_name(i, Some(o))))
            .collect(),
        Some(o) => vec![(args.inputs.clone(), o.clone())],
        None => args
            .inputs
            .iter()
            .map(|i| (vec![i.clone()], out_name(i, None)))
            .collect(),
    };
    let mut table = Vec::new();
    for (inputs, output) in jobs {
        if inputs.iter().any(|i| same_file(i, &output)) {
            bail!(
                "{}: the output would replace the input; choose another name with -o",
                output.display()
            );
        }
        let started = Instant::now();
        let loaded = load_with_progress(&inputs, options.decimals, args.quiet)?;
        let cube = &loaded.cube;
        let plan = Plan::new(&loaded, partitioned);
        let read_seconds = started.elapsed().as_secs_f64();
        let options = convert::choose_layout(cube, &plan, &options)?;
        let bar = progress_bar(cube.rows_read, args.quiet, false);
        bar.set_prefix("writing");
        let mut show = |rows: u64| bar.set_position(rows);
        let all_steps: Vec<usize> = (0..cube.steps.len()).collect();
        let written = if partitioned {
            let out = AtomicOutput::dir(&output)?;
            let mut total = convert::Written::default();
            let mut before = 0;
            for &s in &all_steps {
                let dir = out
                    .path()
                    .join(format!("{}={}", convert::STEP, cube.steps[s]));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
                let file_path = dir.join("part-0.parquet");
                let f = std::fs::File::create(&file_path)
                    .with_context(|| format!("{}: cannot create the file", file_path.display()))?;
                let w = convert::write_parquet(
                    cube,
                    &plan,
                    &options,
                    &[s],
                    std::io::BufWriter::with_capacity(1 << 20, f),
                    &output.display().to_string(),
                    &mut |rows| show(before + rows),
                )?;
                before += w.rows;
                total.rows += w.rows;
                total.row_groups += w.row_groups;
            }
            out.commit()?;
            total
        } else {
            let (out, writer) = AtomicOutput::file(&output)?;
            let w = convert::write_parquet(
                cube,
                &plan,
                &options,
                &all_steps,
                writer,
                &output.display().to_string(),
                &mut show,
            )?;
            out.commit()?;
            w
        };
        bar.finish_and_clear();
        let (csv, csv_bytes) = if args.csv {
            let csv_path = output.with_extension("csv");
            if inputs.iter().any(|i| same_file(i, &csv_path)) {
                bail!(
                    "{}: the CSV output would replace an input; convert to another name with -o",
                    csv_path.display()
                );
            }
            // The CSV keeps the step column even when the Parquet is partitioned.
            let csv_plan = Plan::new(&loaded, false);
            let (out, writer) = AtomicOutput::file(&csv_path)?;
            convert::write_csv(
                cube,
                &csv_plan,
                &options,
                &all_steps,
                writer,
                &csv_path.display().to_string(),
            )?;
            out.commit()?;
            (
                Some(csv_path.display().to_string()),
                Some(size_on_disk(&csv_path)),
            )
        } else {
            (None, None)
        };
        let mut warnings = loaded.rows_not_kept();
        let not_written = loaded.distinct_rows().saturating_sub(written.rows);
        if not_written > 0 {
            warnings.push(format!(
                "{not_written} rows have no value in any metric (null or NaN) and are not written"
            ));
        }
        let input_names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        for w in &warnings {
            eprintln!("warning: {}: {w}", input_names.join(" + "));
        }
        let input_bytes: u64 = loaded.input_bytes.iter().sum();
        let output_bytes = size_on_disk(&output);
        table.push(SizeRow {
            inputs: input_names,
            input_bytes,
            output: output.display().to_string(),
            output_bytes,
            ratio: input_bytes as f64 / output_bytes.max(1) as f64,
            rows: written.rows,
            row_groups: written.row_groups,
            order: format!("{:?}", options.order.unwrap_or_default()),
            row_group_layout: format!("{:?}", options.row_groups.unwrap_or(RowGroups::PerStep)),
            csv,
            csv_bytes,
            read_seconds,
            decode_threads: loaded.decode_threads,
            seconds: started.elapsed().as_secs_f64(),
            warnings,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table)?);
    } else {
        print_size_table(&table);
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn print_size_table(table: &[SizeRow]) {
    let mut rows: Vec<[String; 6]> = vec![[
        "input".into(),
        "size".into(),
        "output".into(),
        "size".into(),
        "ratio".into(),
        "rows".into(),
    ]];
    for r in table {
        rows.push([
            r.inputs.join(" + "),
            human_bytes(r.input_bytes),
            r.output.clone(),
            human_bytes(r.output_bytes),
            format!("{:.0}×", r.ratio),
            r.rows.to_string(),
        ]);
        if let (Some(csv), Some(bytes)) = (&r.csv, r.csv_bytes) {
            rows.push([
                String::new(),
                String::new(),
                csv.clone(),
                human_bytes(bytes),
                format!("{:.1}×", r.input_bytes as f64 / bytes.max(1) as f64),
                r.rows.to_string(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = widths[c] - cell.chars().count();
                if c == 0 || c == 2 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn run_inspect(args: InspectArgs) -> Result<()> {
    let loaded = load_with_progress(std::slice::from_ref(&args.file), None, args.quiet)?;
    let parquet = match (loaded.formats.first(), loaded.files.first()) {
        (Some(Format::Parquet), Some(first)) => Some(inspect::parquet_info(first)?),
        _ => None,
    };
    let mut report = inspect::report(&args.file.display().to_string(), &loaded, parquet);
    if let (Some(Format::Json), [first]) = (loaded.formats.first(), loaded.files.as_slice()) {
        report.json_orient = inspect::json_orient(first);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &inspect::Report) {
    let format = match r.format {
        Some(Format::Parquet) => "Parquet",
        Some(Format::Csv) => "CSV",
        Some(Format::Json) => "JSON",
        None => "unknown format",
    };
    let format = match r.json_orient {
        Some(orient) => format!("{format}, pandas orient=\"{orient}\""),
        None => format.to_string(),
    };
    if r.files.len() > 1 {
        println!("{} ({} files, {format} first, {})", r.file, r.files.len(), human_bytes(r.bytes));
    } else {
        println!("{} ({format}, {})", r.file, human_bytes(r.bytes));
    }
    if let Some(p) = &r.parquet {
        if let [first, _, ..] = r.files.as_slice() {
            println!("first file: {first}");
        }
        println!(
            "writer:     {}",
            p.created_by.as_deref().unwrap_or("(not recorded)")
        );
        println!("rows:       {} in {} row group(s)", p.rows, p.row_groups);
        println!("schema:");
        let w = p.schema.iter().map(|f| f.name.len()).max().unwrap_or(0);
        for f in &p.schema {
            println!(
                "  {:w$}  {}{}",
                f.name,
                f.data_type,
                if f.nullable { "" } else { " not null" }
            );
        }
        println!("columns (codec, encodings, compressed / uncompressed):");
        let w = p.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &p.columns {
            println!(
                "  {:w$}  {:10} {:6} {:40} {:>10} / {:>10}",
                c.name,
                c.physical_type,
                c.codecs.join(","),
                c.encodings.join(","),
                human_bytes(c.compressed_bytes.max(0) as u64),
                human_bytes(c.uncompressed_bytes.max(0) as u64)
            );
        }
    }
    println!("data rows:  {}", r.rows);
    let steps = match (r.steps.first(), r.steps.last()) {
        (Some(a), Some(b)) => format!("{} ({a}..={b})", r.steps.len()),
        _ => "0".into(),
    };
    println!("steps:      {steps}");
    match (r.layers.min, r.layers.max) {
        (Some(a), Some(b)) => println!("layers:     {} ({a}..={b})", r.layers.count),
        _ => println!("layers:     0"),
    }
    println!(
        "variants:   {} ({})",
        r.variants.len(),
        r.variants.join(", ")
    );
    println!("prompts:    {}", r.prompts.len());
    for p in &r.prompts {
        let image = match (p.image_tokens, p.image_grid_side) {
            (0, _) => "no image tokens".to_string(),
            (n, Some(s)) => format!("{n} image tokens ({s}×{s} grid)"),
            (n, None) => format!("{n} image tokens (not square)"),
        };
        println!(
            "  {}: {} positions, {image}, {} distinct tokens",
            p.name, p.positions, p.distinct_tokens
        );
    }
    println!("metrics:");
    let w = r.metrics.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for m in &r.metrics {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        println!(
            "  {:w$}  {} values, min {}, max {}, mean {}, {} null/NaN",
            m.name,
            m.values,
            f(m.min),
            f(m.max),
            f(m.mean),
            m.null_or_nan_rows
        );
    }
    println!(
        "grid:       {} cells, {} without a value",
        r.grid_cells, r.missing_cells
    );
    if r.problems.is_empty() {
        println!("problems:   none found");
    } else {
        println!("problems:");
        for p in &r.problems {
            println!("  - {p}");
        }
    }
}

/// Parse `--variants`: a number of heads, or a list of variant names (returns the heads to
/// generate and the names to keep).
fn parse_variants(s: &str) -> Result<(usize, Option<Vec<String>>)> {
    if let Ok(n) = s.trim().parse::<usize>() {
        return Ok((n, None));
    }
    let names: Vec<String> = s
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    let mut heads = 0;
    for n in &names {
        match n.as_str() {
            "Full" | "Attn" => {}
            _ => match n
                .strip_prefix("Head_")
                .and_then(|h| h.parse::<usize>().ok())
            {
                Some(h) => heads = heads.max(h + 1),
                None => bail!(
                    "--variants: `{n}` is not a variant the generator makes (Full, Attn, Head_N)"
                ),
            },
        }
    }
    if names.is_empty() {
        bail!("--variants: give a number of heads or a list such as Full,Attn,Head_0");
    }
    Ok((heads, Some(names)))
}

fn parse_grid(s: &str) -> Result<Option<(usize, usize)>> {
    if s.eq_ignore_ascii_case("none") || s == "0" {
        return Ok(None);
    }
    let (r, c) = s
        .split_once(['x', 'X', '×'])
        .with_context(|| format!("--image-grid: `{s}` is not ROWSxCOLS (e.g. 32x32) or none"))?;
    let r: usize = r
        .trim()
        .parse()
        .with_context(|| format!("--image-grid: `{r}` is not a number"))?;
    let c: usize = c
        .trim()
        .parse()
        .with_context(|| format!("--image-grid: `{c}` is not a number"))?;
    Ok(Some((r, c)))
}

fn run_generate(args: GenerateArgs) -> Result<()> {
    let (heads, keep) = parse_variants(&args.variants)?;
    let image_grid = parse_grid(&args.image_grid)?;
    if let Some((r, c)) = image_grid {
        if r * c + 2 > args.positions {
            bail!(
                "--image-grid {r}x{c} needs more than {} positions; --positions is {}",
                r * c + 2,
                args.positions
            );
        }
    }
    if args.steps == 0 || args.layers == 0 || args.positions == 0 || args.prompts == 0 {
        bail!("--steps, --layers, --positions and --prompts must be at least 1");
    }
    let format = match args.format {
        Some(f) => f,
        None => match args.output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("parquet") | Some("pq") => GenFormat::Parquet,
            Some("csv") => GenFormat::Csv,
            Some("json") => GenFormat::Json,
            Some("jsonl") | Some("ndjson") => GenFormat::Jsonl,
            _ => bail!(
                "{}: cannot tell the format from the extension; give --format parquet|csv|json|jsonl",
                args.output.display()
            ),
        },
    };
    let config = SynthConfig {
        steps: args.steps,
        layers: args.layers,
        positions: args.positions,
        heads,
        image_grid,
        prompts: args.prompts,
        seed: args.seed,
        ..SynthConfig::demo()
    };
    let total_rows = config.rows() as u64;
    let synth = Synth::new(config);
    let schema = synth.schema();
    let bar = progress_bar(total_rows, args.quiet, false);
    bar.set_prefix("generating");
    let path_text = args.output.display().to_string();
    let (out, writer) = AtomicOutput::file(&args.output)?;
    let keep_batch = |batch: arrow_array::RecordBatch| -> Result<arrow_array::RecordBatch> {
        let Some(names) = &keep else { return Ok(batch) };
        let col = batch
            .column_by_name("variant")
            .context("internal: synthetic data has no variant column")?;
        let text = arrow_cast::cast(col, &arrow_schema::DataType::Utf8)?;
        let text = text
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .context("internal: variant column is not text")?;
        let mask: arrow_array::BooleanArray = text
            .iter()
            .map(|v| Some(v.is_some_and(|v| names.iter().any(|n| n == v))))
            .collect();
        Ok(arrow_select::filter::filter_record_batch(&batch, &mask)?)
    };
    let mut done = 0u64;
    match format {
        GenFormat::Parquet => {
            // As pandas/pyarrow write it: int64, dictionary strings, float32, zstd.
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(
                    parquet::basic::ZstdLevel::try_new(1)?,
                ))
                .set_max_row_group_row_count(Some(1024 * 1024))
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(writer, schema, Some(props))
                .with_context(|| format!("{path_text}: cannot write Parquet"))?;
            for batch in synth {
                done += batch.num_rows() as u64;
                w.write(&keep_batch(batch)?)
                    .with_context(|| format!("{path_text}: cannot write Parquet"))?;
                bar.set_position(done);
            }
            w.into_inner()
                .with_context(|| format!("{path_text}: cannot write Parquet"))?
                .flush()
                .with_context(|| format!("{path_text}: cannot write"))?;
        }
        GenFormat::Csv => {
            let mut w = CsvWriter::new(writer, &path_text);
            for batch in synth {
                done += batch.num_rows() as u64;
                w.write(&keep_batch(batch)?)?;
                bar.set_position(done);
            }
            w.finish()?
                .flush()
                .with_context(|| format!("{path_text}: cannot write"))?;
        }
        GenFormat::Json | GenFormat::Jsonl => {
            let mut w = JsonWriter::new(writer, &path_text, format == GenFormat::Jsonl);
            for batch in synth {
                done += batch.num_rows() as u64;
                w.write(&keep_batch(batch)?)?;
                bar.set_position(done);
            }
            w.finish()?;
        }
    }
    out.commit()?;
    bar.finish_and_clear();
    eprintln!(
        "{}: {} ({})",
        path_text,
        human_bytes(size_on_disk(&args.output)),
        match keep {
            Some(_) => "variants filtered".to_string(),
            None => format!("{total_rows} rows"),
        }
    );
    Ok(())
}

fn run_render(args: RenderArgs) -> Result<()> {
    use mask_impact::view::ViewState;
    let ext = args
        .output
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext != "png" && ext != "svg" {
        bail!(
            "{}: the output must end in .png or .svg",
            args.output.display()
        );
    }
    let loaded = load_with_progress(std::slice::from_ref(&args.file), None, args.quiet)?;
    let cube = &loaded.cube;
    let mut state = ViewState::for_cube(cube);
    let view = match args.view {
        ViewArg::Layers => "layers",
        ViewArg::Grid => "grid",
        ViewArg::Heads => "heads",
    };
    let step = args.step.map(|s| s.to_string());
    let layer = args.layer.map(|l| l.to_string());
    let wanted: [(&str, Option<&str>); 5] = [
        ("view", Some(view)),
        ("step", step.as_deref()),
        ("variant", args.variant.as_deref()),
        ("metric", args.metric.as_deref()),
        ("layer", layer.as_deref()),
    ];
    for (key, value) in wanted {
        if let Some(value) = value {
            if !state.apply(key, value, Some(cube)) {
                bail!(
                    "{}: no {key} `{value}` in this file (steps {:?}, variants {:?}, metrics {:?}, layers {:?})",
                    args.file.display(),
                    cube.steps,
                    cube.variants,
                    cube.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
                    cube.layers
                );
            }
        }
    }
    let state = state.validated(cube);
    let bytes = if ext == "svg" {
        mask_impact::render::figure_svg(cube, &state, args.width, args.height)?.into_bytes()
    } else {
        mask_impact::render::figure_png(cube, &state, args.width, args.height)?
    };
    let (output, mut writer) = AtomicOutput::file(&args.output)?;
    writer
        .write_all(&bytes)
        .and_then(|_| writer.flush())
        .with_context(|| format!("writing {}", args.output.display()))?;
    drop(writer);
    let path = output.commit()?;
    if !args.quiet {
        println!(
            "wrote {} ({})",
            path.display(),
            human_bytes(bytes.len() as u64)
        );
    }
    Ok(())
}
