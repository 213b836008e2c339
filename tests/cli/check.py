#!/usr/bin/env python3
"""Independent checks of the `mask-impact` command-line tool, run by tests/cli_tool.rs.

Every check reads the tool's output with the Python data stack (pyarrow, pandas, polars,
duckdb) and compares it with the input read by pandas, or with pyarrow's own view of a file.
Needs: pip install pyarrow pandas polars duckdb numpy

Usage:
  check.py make-input DIR                  write in.csv, in.json, in.jsonl (pandas) into DIR
  check.py make-long-quoted-input DIR      write long.csv (a 150 kB quoted token) into DIR
  check.py make-wide-input DIR             write wide.csv: more than 65 536 distinct metric values
  check.py roundtrip SRC OUT DECIMALS      OUT (Parquet) holds SRC's values to the rounding
  check.py row-groups OUT N                OUT has N row groups, each holding whole steps
  check.py partitioned SRC DIR DECIMALS    DIR (Hive folder) holds SRC's values
  check.py hive SRC DIR FORMAT             write SRC as a pyarrow dataset in DIR (parquet or
                                           csv), partitioned by generation_step and variant
  check.py inspect FILE REPORT.json        the inspect report agrees with pyarrow
  check.py generate FILE FORMAT STEPS LAYERS POSITIONS HEADS GRID PROMPTS
"""

import json
import math
import os
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.compute as pc
import pyarrow.parquet as pq

KEYS = ["generation_step", "prompt_name", "variant", "layer", "token_position"]
METRICS = ["l2_distance", "cosine_distance"]


def fail(msg):
    print(f"CHECK FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def make_input(out_dir):
    """A small result table with awkward content: unrounded values, NaN cells, missing rows,
    tokens with commas, quotes, line breaks and non-ASCII text."""
    rng = np.random.default_rng(42)
    tokens = ["<|im_start|>", "user", "a,b", 'say "hi"', "\n", "é/ü", "<|image_pad|>", "?"]
    rows = []
    for step in range(3):
        for layer in range(5):
            for pos in range(12 + step):  # later steps have one more position
                for variant in ["Full", "Attn", "Head_0", "Head_1"]:
                    if (step, layer, pos, variant) == (1, 2, 3, "Attn"):
                        continue  # a missing row
                    l2 = float(rng.uniform(0, 300) if pos == 0 else rng.uniform(0, 3))
                    cos = float(rng.uniform(0, 1))
                    if (step + layer + pos) % 17 == 5 and variant == "Head_1":
                        cos = float("nan")
                    rows.append(
                        {
                            "generation_step": step,
                            "layer": layer,
                            "token_masked": tokens[pos % len(tokens)],
                            "token_position": pos,
                            "variant": variant,
                            "l2_distance": l2,
                            "cosine_distance": cos,
                        }
                    )
    df = pd.DataFrame(rows)
    df.to_csv(os.path.join(out_dir, "in.csv"), index=False)
    df.to_json(os.path.join(out_dir, "in.json"), orient="records")
    df.to_json(os.path.join(out_dir, "in.jsonl"), orient="records", lines=True)
    # pandas' other JSON orients: `to_json` with no orient writes columns.
    df.to_json(os.path.join(out_dir, "in.columns.json"))
    df.to_json(os.path.join(out_dir, "in.split.json"), orient="split")


def make_wide_input(out_dir):
    """80 000 rows whose l2 values are almost all distinct at 4 decimals (dictionary indices
    wider than 16 bits) and whose cosine values take a few thousand (16-bit indices), with
    missing values."""
    rng = np.random.default_rng(7)
    steps, layers, positions, variants = 2, 8, 100, 50
    idx = np.indices((steps, layers, positions, variants)).reshape(4, -1)
    n = idx.shape[1]
    l2 = rng.uniform(0, 1000, n)
    cos = np.round(rng.uniform(0, 0.3, n), 4)
    cos[rng.uniform(0, 1, n) < 0.01] = np.nan
    names = ["Full", "Attn"] + [f"Head_{h}" for h in range(variants - 2)]
    df = pd.DataFrame(
        {
            "generation_step": idx[0],
            "layer": idx[1],
            "token_masked": [f"t{p % 37}" for p in idx[2]],
            "token_position": idx[2],
            "variant": [names[v] for v in idx[3]],
            "l2_distance": l2,
            "cosine_distance": cos,
        }
    )
    df.to_csv(os.path.join(out_dir, "wide.csv"), index=False)


def make_long_quoted_input(out_dir):
    """long.csv: one token is 150 kB of text that looks like CSV records (seven fields a
    line, no quotes), so pandas quotes it; a cut guessed inside it is wrong, and must be
    caught. The other tokens are short, some quoted."""
    fake = "9,9,fake,9,Full,0.5,0.5\n" * 6500
    tokens = ["<|im_start|>", "a,b", fake, 'say "hi"', "x", "\n"]
    rows = []
    for step in range(3):
        for layer in range(2):
            for pos in range(len(tokens)):
                for variant in ["Full", "Attn"]:
                    rows.append(
                        {
                            "generation_step": step,
                            "layer": layer,
                            "token_masked": tokens[pos],
                            "token_position": pos,
                            "variant": variant,
                            "l2_distance": step + layer / 10 + pos / 100,
                            "cosine_distance": 0.25,
                        }
                    )
    pd.DataFrame(rows).to_csv(os.path.join(out_dir, "long.csv"), index=False)


def read_source(path):
    if path.endswith(".csv"):
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    if path.endswith(".jsonl"):
        return pd.read_json(path, orient="records", lines=True)
    for orient in ["columns", "split"]:
        if path.endswith(f".{orient}.json"):
            return pd.read_json(path, orient=orient)
    if path.endswith(".json"):
        return pd.read_json(path, orient="records")
    return pq.read_table(path).to_pandas()


def normalise(df):
    df = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype) or df[c].dtype == object:
            df[c] = df[c].astype(str)
    if "generation_step" not in df:
        df["generation_step"] = 0
    if "prompt_name" not in df:
        df["prompt_name"] = ""
    for k in ["generation_step", "layer", "token_position"]:
        df[k] = df[k].astype("int64")
    # Rows without any metric value are not written (no data).
    present = df[[m for m in METRICS if m in df]].notna().any(axis=1)
    return df[present].sort_values(KEYS).reset_index(drop=True)


def compare(src, out, decimals, what):
    src = normalise(src)
    out = normalise(out)
    check(len(src) == len(out), f"{what}: {len(out)} rows, expected {len(src)}")
    for k in KEYS + ["token_masked"]:
        if k in src:
            check((src[k].values == out[k].values).all(), f"{what}: column {k} differs")
    for m in METRICS:
        a = src[m].to_numpy(dtype="float64")
        b = out[m].to_numpy(dtype="float64")
        check((np.isnan(a) == np.isnan(b)).all(), f"{what}: {m}: missing values differ")
        ok = ~np.isnan(a)
        a, b = a[ok], b[ok]
        spacing = np.spacing(np.abs(a).astype("float32")).astype("float64")
        if decimals is None:
            tol = spacing
        else:
            tol = 0.5 * 10.0 ** (-decimals) + 2 * spacing
            # And the output is rounded: where float32 can hold the decimals, it does.
            small = np.abs(b) < 10.0
            r = np.round(b[small], decimals)
            check(
                (np.abs(b[small] - r) <= 2 * np.spacing(np.abs(r).astype("float32"))).all(),
                f"{what}: {m}: values are not rounded to {decimals} decimals",
            )
        worst = np.max(np.abs(a - b) - tol) if len(a) else -1
        check(worst <= 0, f"{what}: {m}: a value differs by more than the rounding (excess {worst})")
        # Exactly the seed note's recipe (`round(d)`, then float32) on the values as read in
        # float64: a text file's values rounded before they become float32, not after (which
        # rounds twice, one unit of the last decimal off now and then). A float32 source is
        # rounded as its float64 widening (pandas rounds a float32 column in float32
        # arithmetic, which is itself off now and then).
        want = (a if decimals is None else np.round(a, decimals)).astype("float32")
        off = want != b.astype("float32")
        check(
            not off.any(),
            f"{what}: {m}: {off.sum()} of {len(a)} values are not numpy.round(x, {decimals}) as "
            f"float32, e.g. {a[off][:3]} -> {b[off][:3]}, expected {want[off][:3]}",
        )


def check_parquet_layout(path, expect_step_column=True):
    f = pq.ParquetFile(path)
    schema = f.schema_arrow
    md = f.metadata
    for m in METRICS:
        check(schema.field(m).type == pa.float32(), f"{path}: {m} is {schema.field(m).type}, not float32")
    for c in ["token_masked", "variant"]:
        check(pa.types.is_dictionary(schema.field(c).type), f"{path}: {c} is not dictionary-encoded")
    for c in ["layer", "token_position"] + (["generation_step"] if expect_step_column else []):
        t = schema.field(c).type
        check(t in (pa.int8(), pa.int16()), f"{path}: {c} is {t}, expected a narrow integer type")
    for rg in range(md.num_row_groups):
        for i in range(md.num_columns):
            col = md.row_group(rg).column(i)
            check(col.compression == "ZSTD", f"{path}: {col.path_in_schema} uses {col.compression}")
    check_statistics(path)
    if expect_step_column:
        steps = pq.read_table(path, columns=["generation_step"]).column(0).to_numpy()
        n_steps = len(set(steps.tolist()))
        check(1 <= md.num_row_groups <= n_steps, f"{path}: {md.num_row_groups} row groups for {n_steps} steps")
        # Row groups hold whole steps, in step order: each group's step range (from its
        # statistics) lies after the previous group's, and the steps each group holds are
        # exactly those its statistics announce.
        idx = schema.get_field_index("generation_step")
        previous_max = None
        for rg in range(md.num_row_groups):
            st = md.row_group(rg).column(idx).statistics
            check(st is not None and st.has_min_max, f"{path}: row group {rg} has no step statistics")
            check(previous_max is None or st.min > previous_max, f"{path}: row group {rg} (steps {st.min}..{st.max}) is not after the previous one")
            held = f.read_row_group(rg, columns=["generation_step"]).column(0).to_numpy()
            check(held.min() == st.min and held.max() == st.max, f"{path}: row group {rg} statistics do not match its steps")
            previous_max = st.max


def check_statistics(path):
    """Every column chunk's statistics agree with the values pyarrow reads from it: null count,
    and min/max (text cut to 64 bytes: then a prefix of the minimum and a bound above the
    maximum); and every chunk has a page index (column and offset index)."""
    f = pq.ParquetFile(path)
    md = f.metadata
    for rg in range(md.num_row_groups):
        table = f.read_row_group(rg)
        for i in range(md.num_columns):
            col = md.row_group(rg).column(i)
            name = col.path_in_schema
            where = f"{path}: row group {rg}, {name}"
            check(col.has_column_index and col.has_offset_index, f"{where}: no page index")
            st = col.statistics
            check(st is not None, f"{where}: no statistics")
            values = table.column(name)
            if pa.types.is_dictionary(values.type):
                values = values.cast(values.type.value_type)
            nulls = values.null_count
            check(st.null_count == nulls, f"{where}: null count {st.null_count}, data has {nulls}")
            present = values.drop_null()
            if len(present) == 0:
                check(not st.has_min_max, f"{where}: min/max on an all-null chunk")
                continue
            if pa.types.is_floating(present.type) and not st.has_min_max:
                # arrow-rs declares IEEE_754_TOTAL_ORDER for float columns, an order pyarrow
                # does not read yet: it then ignores their min/max (the Rust tests check them).
                continue
            check(st.has_min_max, f"{where}: no min/max")
            lo, hi = pc.min(present).as_py(), pc.max(present).as_py()
            if isinstance(lo, str) and (len(lo.encode()) > 64 or len(hi.encode()) > 64):
                check(lo.startswith(st.min) and st.max >= hi, f"{where}: text bounds {st.min!r}..{st.max!r} do not hold {lo!r}..{hi!r}")
            else:
                check(st.min == lo and st.max == hi, f"{where}: min/max {st.min!r}..{st.max!r}, data {lo!r}..{hi!r}")


def roundtrip(src_path, out_path, decimals):
    decimals = None if decimals == "none" else int(decimals)
    src = read_source(src_path)
    check_parquet_layout(out_path)
    compare(src, pq.read_table(out_path).to_pandas(), decimals, "pyarrow")
    compare(src, pd.read_parquet(out_path), decimals, "pandas")
    import polars as pl

    compare(src, pl.read_parquet(out_path).to_pandas(), decimals, "polars")
    import duckdb

    compare(src, duckdb.sql(f"SELECT * FROM read_parquet('{out_path}')").df(), decimals, "duckdb")


def row_groups(out_path, n):
    check_parquet_layout(out_path)
    got = pq.ParquetFile(out_path).metadata.num_row_groups
    check(got == int(n), f"{out_path}: {got} row groups, expected {n}")


def partitioned(src_path, out_dir, decimals):
    src = read_source(src_path)
    steps = sorted(set(src["generation_step"].tolist()))
    names = sorted(os.listdir(out_dir))
    check(names == sorted(f"generation_step={s}" for s in steps), f"{out_dir}: folders {names}")
    for s in steps:
        part = os.path.join(out_dir, f"generation_step={s}", "part-0.parquet")
        check(os.path.exists(part), f"{part} is missing")
        check_parquet_layout(part, expect_step_column=False)
    t = ds.dataset(out_dir, format="parquet", partitioning="hive").to_table()
    compare(src, t.to_pandas(), int(decimals), "pyarrow.dataset")
    import duckdb

    df = duckdb.sql(f"SELECT * FROM read_parquet('{out_dir}/*/*.parquet', hive_partitioning = true)").df()
    compare(src, df, int(decimals), "duckdb hive")


def hive(src_path, out_dir, fmt):
    """SRC as pyarrow writes a dataset partitioned by step and variant (as Spark and DuckDB
    lay one out too) in FORMAT (parquet or csv), with a marker file that is no data."""
    t = pa.Table.from_pandas(read_source(src_path), preserve_index=False)
    part = ds.partitioning(
        pa.schema([("generation_step", t.schema.field("generation_step").type), ("variant", pa.string())]),
        flavor="hive",
    )
    t = t.set_column(t.schema.get_field_index("variant"), "variant", pc.cast(t["variant"], pa.string()))
    ds.write_dataset(t, out_dir, format=fmt, partitioning=part)
    open(os.path.join(out_dir, "_SUCCESS"), "w").close()


def inspect(path, report_path):
    with open(report_path) as fh:
        r = json.load(fh)
    f = pq.ParquetFile(path)
    md = f.metadata
    p = r["parquet"]
    check(p["created_by"] == md.created_by, f"created_by {p['created_by']!r} vs {md.created_by!r}")
    check(p["rows"] == md.num_rows, f"rows {p['rows']} vs {md.num_rows}")
    check(p["row_groups"] == md.num_row_groups, "row groups")
    check([c["name"] for c in p["columns"]] == [md.schema.column(i).path for i in range(md.num_columns)], "column names")
    for i, c in enumerate(p["columns"]):
        comp = sum(md.row_group(g).column(i).total_compressed_size for g in range(md.num_row_groups))
        unc = sum(md.row_group(g).column(i).total_uncompressed_size for g in range(md.num_row_groups))
        codecs = sorted({md.row_group(g).column(i).compression for g in range(md.num_row_groups)})
        check(c["compressed_bytes"] == comp, f"{c['name']}: compressed {c['compressed_bytes']} vs {comp}")
        check(c["uncompressed_bytes"] == unc, f"{c['name']}: uncompressed {c['uncompressed_bytes']} vs {unc}")
        check(c["codecs"] == codecs, f"{c['name']}: codecs {c['codecs']} vs {codecs}")
        check(c["physical_type"] == md.schema.column(i).physical_type, f"{c['name']}: physical type")
    check([s["name"] for s in p["schema"]] == f.schema_arrow.names, "schema names")
    df = f.read().to_pandas()
    check(r["rows"] == len(df), "data rows")
    check(r["steps"] == sorted(df["generation_step"].unique().tolist()), "steps")
    check(r["layers"]["count"] == df["layer"].nunique(), "layer count")
    check(r["layers"]["min"] == df["layer"].min() and r["layers"]["max"] == df["layer"].max(), "layer range")
    check(sorted(r["variants"]) == sorted(df["variant"].astype(str).unique().tolist()), "variants")
    check(r["prompts"][0]["positions"] == df["token_position"].max() + 1, "positions")
    pads = df.drop_duplicates("token_position")
    n_pad = int((pads["token_masked"].astype(str) == "<|image_pad|>").sum())
    check(r["prompts"][0]["image_tokens"] == n_pad, f"image tokens {r['prompts'][0]['image_tokens']} vs {n_pad}")
    for m in r["metrics"]:
        col = df[m["name"]].astype("float64")
        check(m["values"] == int(col.notna().sum()), f"{m['name']}: value count")
        check(math.isclose(m["min"], col.min(), abs_tol=1e-6), f"{m['name']}: min {m['min']} vs {col.min()}")
        check(math.isclose(m["max"], col.max(), abs_tol=1e-6), f"{m['name']}: max {m['max']} vs {col.max()}")
    dup = int(df.duplicated(["generation_step", "variant", "layer", "token_position"]).sum())
    check(r["duplicates"] == dup, f"duplicates {r['duplicates']} vs {dup}")
    grid = 0
    n_var, n_layer = df["variant"].nunique(), df["layer"].nunique()
    n_steps, n_pos = int(df["generation_step"].nunique()), int(df["token_position"].max()) + 1
    grid = n_steps * n_var * n_layer * n_pos
    present = len(df.drop_duplicates(["generation_step", "variant", "layer", "token_position"]))
    check(r["grid_cells"] == grid, f"grid {r['grid_cells']} vs {grid}")
    check(r["missing_cells"] == grid - present, f"missing {r['missing_cells']} vs {grid - present}")


def generate(path, fmt, steps, layers, positions, heads, grid, prompts):
    steps, layers, positions, heads, prompts = map(int, (steps, layers, positions, heads, prompts))
    if fmt == "parquet":
        f = pq.ParquetFile(path)
        s = f.schema_arrow
        for c in ["generation_step", "layer", "token_position"]:
            check(s.field(c).type == pa.int64(), f"{c} is {s.field(c).type}, pandas writes int64")
        for c in ["token_masked", "variant"]:
            check(pa.types.is_dictionary(s.field(c).type), f"{c} is not dictionary")
        for c in METRICS:
            check(s.field(c).type == pa.float32(), f"{c} is not float32")
        md = f.metadata
        check(all(md.row_group(0).column(i).compression == "ZSTD" for i in range(md.num_columns)), "codec")
        df = f.read().to_pandas()
    elif fmt == "csv":
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    elif fmt == "json":
        with open(path, "rb") as fh:
            check(fh.read(2) == b'[{', "JSON does not start like pandas orient=records")
        df = pd.read_json(path, orient="records")
    else:
        df = pd.read_json(path, orient="records", lines=True)
    n_var = 2 + heads
    expected = prompts * steps * layers * positions * n_var
    check(len(df) == expected, f"{len(df)} rows, expected {expected}")
    cols = ["generation_step", "layer", "token_masked", "token_position", "variant"] + METRICS
    if prompts > 1:
        cols += ["prompt_name", "config_prompt"]
    check(list(df.columns) == cols, f"columns {list(df.columns)}")
    check(df["generation_step"].nunique() == steps, "steps")
    check(df["layer"].nunique() == layers, "layers")
    check(df["token_position"].nunique() == positions, "positions")
    check(df["variant"].nunique() == n_var, "variants")
    want = ["Full", "Attn"] + [f"Head_{h}" for h in range(heads)]
    check(sorted(df["variant"].astype(str).unique()) == sorted(want), "variant names")
    if grid != "none":
        r, c = map(int, grid.split("x"))
        one = df[(df["generation_step"] == 0) & (df["layer"] == 0) & (df["variant"].astype(str) == "Full")]
        if prompts > 1:
            one = one[one["prompt_name"].astype(str) == "prompt_0"]
        check(int((one["token_masked"].astype(str) == "<|image_pad|>").sum()) == r * c, "image grid")
    check(not df.duplicated(["generation_step", "layer", "token_position", "variant"] + (["prompt_name"] if prompts > 1 else [])).any(), "duplicate cells")
    for m in METRICS:
        v = df[m].astype("float64")
        check(v.notna().all() and (v >= 0).all(), f"{m}: missing or negative values")


def gzip_file(src, out):
    """`src` gzip-compressed into `out` as two members (as `cat a.gz b.gz` makes, or pigz)."""
    import gzip

    data = open(src, "rb").read()
    half = len(data) // 2
    with open(out, "wb") as f:
        f.write(gzip.compress(data[:half]))
        f.write(gzip.compress(data[half:]))


def main(argv):
    cmd, args = argv[1], argv[2:]
    {
        "make-input": make_input,
        "make-wide-input": make_wide_input,
        "make-long-quoted-input": make_long_quoted_input,
        "roundtrip": roundtrip,
        "row-groups": row_groups,
        "partitioned": partitioned,
        "hive": hive,
        "inspect": inspect,
        "generate": generate,
        "gzip": gzip_file,
    }[cmd](*args)
    print(f"ok: {cmd}")


if __name__ == "__main__":
    main(sys.argv)
