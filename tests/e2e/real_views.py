#!/usr/bin/env python3
"""Expectations for the grid and heads views of the real result file, read with pyarrow (not with
our code).

usage: real_views.py FILE.parquet --step S --layer L --metric M --count N

Prints JSON: {"image_positions": [...]  (positions whose token is `<|image_pad|>`, in order),
"grid_cells": [{"k", "position", "token", "value"}...]  (variant Full; image token number k),
"heads_cells": [{"variant", "position", "token", "value"}...]  (N cells with a value, several
variants)} for step S and layer L.
"""
import argparse
import json
import random

import pyarrow.compute as pc
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--layer", type=int, required=True)
    ap.add_argument("--metric", default="l2_distance")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    table = pq.read_table(args.path)
    rows = table.filter(pc.and_(pc.equal(table.column("generation_step"), args.step),
                                pc.equal(table.column("layer"), args.layer)))
    positions = rows.column("token_position").to_pylist()
    variants = pc.cast(rows.column("variant"), "string").to_pylist()
    tokens = pc.cast(rows.column("token_masked"), "string").to_pylist()
    values = rows.column(args.metric).to_pylist()
    token_at = {}
    value_at = {}
    for p, v, t, x in zip(positions, variants, tokens, values):
        token_at.setdefault(p, t)
        value_at[(v, p)] = None if x is None or x != x else x
    image = sorted(p for p, t in token_at.items() if t == "<|image_pad|>")
    ks = [k for k in [0, 1, 7, 15, 16, 17, 23, 31, 40, 56, 100, 116, 117, 200, 216, 222, 238,
                      239, 240, 254, 255]
          if k < len(image)]
    grid_cells = [{"k": k, "position": image[k], "token": token_at[image[k]],
                   "value": value_at.get(("Full", image[k]))} for k in ks]
    rng = random.Random(args.seed)
    with_value = sorted(k for k, x in value_at.items() if x is not None)
    heads_cells = [{"variant": v, "position": p, "token": token_at.get(p), "value": value_at[(v, p)]}
                   for v, p in rng.sample(with_value, min(args.count, len(with_value)))]
    print(json.dumps({"image_positions": image, "grid_cells": grid_cells,
                      "heads_cells": heads_cells,
                      "variants": sorted(set(variants))}))


if __name__ == "__main__":
    main()
