#!/usr/bin/env python3
"""Independent expectations for the end-to-end tests, read with pyarrow (not with our code).

usage: sample_cells.py FILE.parquet --step S --variant V --metric M --count N --seed K

Prints JSON: {"cells": [{"layer", "position", "variant", "step", "value", "value_4dp", "token",
"row_max_excluding_position_0"}...], "steps": [...], "variants": [...]} for N random cells with a
value in (step S, variant V), where the row is (step, layer, variant) as in the layers view.
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
    ap.add_argument("--variant", required=True)
    ap.add_argument("--metric", default="l2_distance")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--seed", type=int, default=20261125)
    args = ap.parse_args()

    table = pq.read_table(args.path)
    steps = sorted(set(table.column("generation_step").to_pylist()))
    variants = sorted(set(pc.cast(table.column("variant"), "string").to_pylist()))
    mask = pc.and_(
        pc.equal(table.column("generation_step"), args.step),
        pc.equal(pc.cast(table.column("variant"), "string"), args.variant),
    )
    rows = table.filter(mask)
    layers = rows.column("layer").to_pylist()
    positions = rows.column("token_position").to_pylist()
    tokens = pc.cast(rows.column("token_masked"), "string").to_pylist()
    values = rows.column(args.metric).to_pylist()  # float32 -> exact Python floats

    row_max = {}
    for layer, position, value in zip(layers, positions, values):
        if position != 0 and value is not None and value == value:
            row_max[layer] = max(row_max.get(layer, float("-inf")), value)

    candidates = [
        i for i, v in enumerate(values) if v is not None and v == v
    ]
    rng = random.Random(args.seed)
    picked = rng.sample(candidates, min(args.count, len(candidates)))
    cells = [
        {
            "step": args.step,
            "layer": layers[i],
            "position": positions[i],
            "variant": args.variant,
            "value": values[i],
            "value_4dp": "%.4f" % values[i],
            "token": tokens[i],
            "row_max_excluding_position_0": row_max.get(layers[i]),
        }
        for i in picked
    ]
    print(json.dumps({"cells": cells, "steps": steps, "variants": variants}))


if __name__ == "__main__":
    main()
