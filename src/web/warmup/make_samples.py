"""Writes the decode worker's warm-up samples (src/web/warmup/*.parquet).

The worker decodes these small files once after it starts, while the page waits for a file
(src/web/warmup.rs), so that the browser has compiled its hot code with its optimising tier
before the user's file comes. They are laid out like the files users open:

- pandas-snappy.parquet: pandas `to_parquet` defaults (pyarrow, snappy, dictionary pages),
  categories for text, int64 keys, float32 metrics: like the real experiment files;
- pandas-zstd.parquet: the seed note's recipe (zstd), with a small dictionary page limit so
  that the metric columns fall back to plain pages part-way, as large files' do;
- mask-impact.parquet: `mask-impact convert` of the first (narrow ints, delta positions, our
  dictionaries), written when a built CLI is given.

Row groups span several steps, so the early view reads part of a group, as in large files.
Values repeat in a short cycle, which keeps the files small; the decoders do the same work.

    python3 src/web/warmup/make_samples.py [path/to/mask-impact]
"""
import os
import subprocess
import sys

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS, LAYERS, POSITIONS = 3, 8, 300
VARIANTS = ["Full", "Attn", "Head_0", "Head_1"]


def frame(distinct):
    tokens = ["<|im_start|>", "user", "\n"] + ["<|image_pad|>"] * 256 + [f" w{i}" for i in range(POSITIONS - 259)]
    s, l, p, v = np.meshgrid(np.arange(STEPS), np.arange(LAYERS), np.arange(POSITIONS), np.arange(len(VARIANTS)), indexing="ij")
    s, l, p, v = (a.ravel() for a in (s, l, p, v))
    # `distinct` values in a cycle of that many rows (a multiple of 8, so that the bit-packed
    # dictionary indices repeat whole bytes and the codecs find them again).
    cycle = (np.arange(len(s)) * 7919) % distinct
    l2 = np.round(0.5 + cycle * 0.0137 + 40.0 * (p == 0), 4).astype(np.float32)
    cos = np.round((cycle % 512) / 600.0, 4).astype(np.float32)
    prompt = "<|im_start|>user\nWhat color is the person's hair? Answer in one word.<image><|im_end|>\n"
    return pd.DataFrame({
        "generation_step": s.astype(np.int64),
        "layer": l.astype(np.int64),
        "token_masked": pd.Categorical([tokens[i] for i in p]),
        "token_position": p.astype(np.int64),
        "variant": pd.Categorical([VARIANTS[i] for i in v]),
        "l2_distance": l2,
        "cosine_distance": cos,
        "prompt_name": pd.Categorical(["image_question"] * len(s)),
        "config_prompt": pd.Categorical([prompt] * len(s)),
    })


def main():
    df = frame(1024)
    group = len(df) // 3 + 1000
    snappy = os.path.join(HERE, "pandas-snappy.parquet")
    df.to_parquet(snappy, index=False, row_group_size=group)
    # 2048 l2 values (8 KiB) against a dictionary page limit of 4 KiB.
    frame(2048).to_parquet(os.path.join(HERE, "pandas-zstd.parquet"), index=False, compression="zstd",
                  row_group_size=group, dictionary_pagesize_limit=4 * 1024, compression_level=19)
    if len(sys.argv) > 1:
        subprocess.run([sys.argv[1], "convert", snappy, "-o", os.path.join(HERE, "mask-impact.parquet")], check=True)
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".parquet"):
            print(name, os.path.getsize(os.path.join(HERE, name)))


if __name__ == "__main__":
    main()
