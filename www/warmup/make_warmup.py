"""Writes www/warmup/warmup.parquet: a small results file (pandas/pyarrow, as the experiment
writes them) that the decode worker reads a few times while the page is idle, so that the
browser has optimised the decoding code before the user's file arrives (see src/web/worker.rs).

    python3 www/warmup/make_warmup.py
"""
import pathlib

import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
steps, layers, positions = 2, 4, 256
variants = ["Full", "Attn"]
rows = [(s, l, p, v) for s in range(steps) for l in range(layers) for p in range(positions) for v in variants]
df = pd.DataFrame(rows, columns=["generation_step", "layer", "token_position", "variant"])
df.insert(2, "token_masked", np.where(df.token_position % 5 == 0, "<|image_pad|>", "tok" + (df.token_position % 37).astype(str)))
df["l2_distance"] = rng.gamma(2.0, 3.0, len(df)).round(2).astype("float32")
df["cosine_distance"] = rng.random(len(df)).round(2).astype("float32")
df["prompt_name"] = "warmup"
df["config_prompt"] = "warm-up prompt"
for c in ["token_masked", "variant", "prompt_name", "config_prompt"]:
    df[c] = df[c].astype("category")
out = pathlib.Path(__file__).with_name("warmup.parquet")
# Both codecs real files use: snappy (pyarrow's default) for the keys, zstd for the metrics.
df.to_parquet(out, index=False, compression={c: ("zstd" if c.endswith("distance") else "snappy") for c in df.columns},
              row_group_size=len(df) // 2)
print(out, out.stat().st_size, "bytes,", len(df), "rows")
