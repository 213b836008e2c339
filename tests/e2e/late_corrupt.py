#!/usr/bin/env python3
"""A Parquet file whose damage is found only late in the load: one row group per step (steps
0–7, sorted), the l2_distance page of the last row group overwritten. The viewer can show a first
view of an early step before it reaches the damage.

usage: late_corrupt.py OUT.parquet  → writes OUT.parquet, prints {"row_groups", "damaged_row_group"}.
"""
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(11)
    steps, layers, positions, variants = 8, 6, 40, ["Full", "Attn"]
    rows = [(s, layer, p, v) for s in range(steps) for layer in range(layers)
            for p in range(positions) for v in variants]
    n = len(rows)
    table = pa.table({
        "generation_step": pa.array([r[0] for r in rows], pa.int64()),
        "layer": pa.array([r[1] for r in rows], pa.int64()),
        "token_masked": pa.array([f"tok{r[2]}" for r in rows], pa.string()),
        "token_position": pa.array([r[2] for r in rows], pa.int64()),
        "variant": pa.array([r[3] for r in rows], pa.string()),
        "l2_distance": pa.array(rng.random(n), pa.float64()).cast(pa.float32()),
        "cosine_distance": pa.array(rng.random(n) / 10, pa.float64()).cast(pa.float32()),
    })
    per_step = n // steps
    pq.write_table(table, out, row_group_size=per_step, compression="none",
                   use_dictionary=False, write_statistics=True)
    md = pq.ParquetFile(out).metadata
    last = md.num_row_groups - 1
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    chunk = md.row_group(last).column(names.index("l2_distance"))
    data = bytearray(open(out, "rb").read())
    start = chunk.data_page_offset
    data[start:start + 40] = b"\xff" * 40
    with open(out, "wb") as f:
        f.write(bytes(data))
    print(json.dumps({"row_groups": md.num_row_groups, "damaged_row_group": last}))


if __name__ == "__main__":
    main()
