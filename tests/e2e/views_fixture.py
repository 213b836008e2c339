#!/usr/bin/env python3
"""The data set of the view end-to-end tests, and what the page must show for it, computed here
with pyarrow/numpy from the file as written (never with the viewer's code).

usage: views_fixture.py OUT.parquet  → writes OUT.parquet, prints the expectations as JSON.

The file: steps 0–2, layers 0–5, variants Full, Attn, Head_0–Head_2, metrics l2_distance and
cosine_distance (float32) and kl_divergence (float64), 268 positions: a short chat prefix,
`<|vision_start|>`, 256 `<|image_pad|>` tokens (positions 4–259, a 16 × 16 grid), `<|vision_end|>`
and a question. Position 0 (the attention sink) holds values 2–3 times larger than the rest, so
that leaving it out of the scale changes the colours; the first image token (position 4) holds
values 1.5–2 times larger, for the same reason in the grid view. About 1 % of the values are NaN
and 1 % of the rows are missing.

Expected colours use the documented white → red map (README, CONTRACT): intensity t in [0, 1],
level k = round(20 t), colour rgb(255, g, g) with g = round(255 (20 − k) / 20). Intensities:
relative value r = min(|v| / reference, 1) where the reference is the maximum |v| of the cell's
group (row: same row of the heatmap; column: same position over the rows shown; global: all cells
shown; position 0 left out when `exclude0=on`, except in column mode where there is nothing to
leave out inside a column); linear t = r, sqrt t = √r, log t = log10(1 + 999 r) / 3; percentile
t = (number of the group's values ≤ v) / (size of the group). In the grid view the image tokens
form their own group (the first image token left out with `exclude0=on`).
"""
import json
import math
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PREFIX = ["<|im_start|>", "user", "\n", "<|vision_start|>"]
SUFFIX = ["<|vision_end|>", "What", " color", " is", " the", " hair", "?", "<|im_end|>"]
N_IMAGE = 256
TOKENS = PREFIX + ["<|image_pad|>"] * N_IMAGE + SUFFIX
IMAGE_FIRST = len(PREFIX)
STEPS = [0, 1, 2]
LAYERS = list(range(6))
VARIANTS = ["Full", "Attn", "Head_0", "Head_1", "Head_2"]
METRICS = ["l2_distance", "cosine_distance", "kl_divergence"]


def write(path):
    rng = np.random.default_rng(20261125)
    cols = {k: [] for k in ["generation_step", "layer", "token_masked", "token_position",
                            "variant", "l2_distance", "cosine_distance", "kl_divergence"]}
    for s in STEPS:
        for layer in LAYERS:
            for pos, tok in enumerate(TOKENS):
                if pos == 0:
                    base = rng.uniform(2.0, 3.0)
                elif pos == IMAGE_FIRST:
                    base = rng.uniform(1.5, 2.0)
                else:
                    base = rng.uniform(0.05, 1.0)
                for v in VARIANTS:
                    if pos != len(TOKENS) - 1 and rng.random() < 0.01:
                        continue  # a missing row
                    share = 1.0 if v == "Full" else rng.uniform(0.05, 1.0)
                    l2 = round(base * share * (1 + layer / 5), 4)
                    cos = round(base * share / 10 + rng.uniform(0, 0.01), 5)
                    kl = float(rng.uniform(0, 1))
                    if rng.random() < 0.01:
                        l2 = float("nan")
                    cols["generation_step"].append(s)
                    cols["layer"].append(layer)
                    cols["token_masked"].append(tok)
                    cols["token_position"].append(pos)
                    cols["variant"].append(v)
                    cols["l2_distance"].append(l2)
                    cols["cosine_distance"].append(cos)
                    cols["kl_divergence"].append(kl)
    table = pa.table({
        "generation_step": pa.array(cols["generation_step"], pa.int64()),
        "layer": pa.array(cols["layer"], pa.int64()),
        "token_masked": pa.array(cols["token_masked"], pa.string()).dictionary_encode(),
        "token_position": pa.array(cols["token_position"], pa.int64()),
        "variant": pa.array(cols["variant"], pa.string()).dictionary_encode(),
        "l2_distance": pa.array(cols["l2_distance"], pa.float64()).cast(pa.float32()),
        "cosine_distance": pa.array(cols["cosine_distance"], pa.float64()).cast(pa.float32()),
        "kl_divergence": pa.array(cols["kl_divergence"], pa.float64()),
    })
    pq.write_table(table, path, compression="zstd")


class Data:
    """The file read back with pyarrow: value(step, layer, variant, metric, position) → float
    (the stored float32/float64 value exactly) or None."""

    def __init__(self, path):
        t = pq.read_table(path)
        self.tokens = {}
        self.values = {}
        steps = t.column("generation_step").to_pylist()
        layers = t.column("layer").to_pylist()
        positions = t.column("token_position").to_pylist()
        variants = pc.cast(t.column("variant"), pa.string()).to_pylist()
        tokens = pc.cast(t.column("token_masked"), pa.string()).to_pylist()
        metrics = {m: t.column(m).to_pylist() for m in METRICS}
        for i, key in enumerate(zip(steps, layers, variants, positions)):
            self.tokens.setdefault(key[3], tokens[i])
            for m in METRICS:
                v = metrics[m][i]
                self.values[key + (m,)] = None if v is None or v != v else v
        self.n_positions = max(positions) + 1

    def value(self, step, layer, variant, metric, position):
        return self.values.get((step, layer, variant, position, metric))


def levels(t):
    """Allowed reds levels for intensity t: round(20 t), both neighbours near a .5 boundary."""
    x = 20.0 * min(max(t, 0.0), 1.0)
    out = {int(math.floor(x + 0.5))}
    if abs(x - math.floor(x) - 0.5) < 1e-3:
        out |= {int(math.floor(x)), int(math.ceil(x))}
    return sorted(out)


def scaled(scale, r):
    r = min(r, 1.0)
    if scale == "linear":
        return r
    if scale == "sqrt":
        return math.sqrt(r)
    if scale == "log":
        return math.log10(1.0 + 999.0 * r) / 3.0
    raise ValueError(scale)


def intensity(v, group, scale):
    """t of value v in a group (list of values with data, already without excluded cells)."""
    if scale == "percentile":
        return sum(1 for x in group if x <= v) / len(group) if group else 1.0
    ref = max((abs(x) for x in group), default=0.0)
    return scaled(scale, abs(v) / ref) if ref > 0 else (1.0 if v != 0 else 0.0)


def table_mode(d, rng, hash_, n_cells):
    """Expected probes and colour levels for a layers or heads view given by its hash."""
    view, step, metric = hash_["view"], int(hash_["step"]), hash_["metric"]
    norm, scale, ex0 = hash_["norm"], hash_["scale"], hash_["exclude0"] == "on"
    n = d.n_positions
    if view == "layers":
        rows = [(layer, hash_["variant"]) for layer in LAYERS]
    else:
        rows = [(int(hash_["layer"]), v) for v in VARIANTS]
    grid = [[d.value(step, layer, v, metric, p) for p in range(n)] for layer, v in rows]

    def group_of(ri, p):
        if norm == "row":
            return [x for q, x in enumerate(grid[ri]) if x is not None and not (ex0 and q == 0)]
        if norm == "column":
            return [grid[r][p] for r in range(len(rows)) if grid[r][p] is not None]
        return [x for r in range(len(rows)) for q, x in enumerate(grid[r])
                if x is not None and not (ex0 and q == 0)]

    cells = []
    picks = [(ri, 0) for ri in range(0, len(rows), 2)]  # position 0 of some rows
    picks += [(int(rng.integers(len(rows))), int(rng.integers(1, n))) for _ in range(n_cells)]
    for ri, p in picks:
        layer, variant = rows[ri]
        v = grid[ri][p]
        cell = {"layer": layer, "variant": variant, "position": p, "value": v,
                "token": d.tokens.get(p), "step": step, "metric": metric}
        if v is not None:
            cell["levels"] = levels(intensity(v, group_of(ri, p), scale))
        cells.append(cell)
    # A few cells without data, when the slice has them.
    missing = [(ri, p) for ri in range(len(rows)) for p in range(n) if grid[ri][p] is None]
    for ri, p in missing[:3]:
        layer, variant = rows[ri]
        cells.append({"layer": layer, "variant": variant, "position": p, "value": None,
                      "token": d.tokens.get(p), "step": step, "metric": metric})
    return {"hash": hash_, "cells": cells}


def main():
    path = sys.argv[1]
    write(path)
    d = Data(path)
    rng = np.random.default_rng(7)
    base = {"cmap": "reds", "heatmap": "on", "values": "off", "clip": "none", "zoom": "", "layers": "",
            "share": "off", "pin": ""}

    def h(**kw):
        out = dict(base)
        out.update({k: str(v) for k, v in kw.items()})
        return out

    modes = [
        h(view="layers", step=1, variant="Attn", metric="l2_distance", layer=0, norm="row",
          exclude0="on", scale="linear"),
        h(view="layers", step=1, variant="Attn", metric="l2_distance", layer=0, norm="row",
          exclude0="off", scale="linear"),
        h(view="layers", step=1, variant="Attn", metric="l2_distance", layer=0, norm="column",
          exclude0="on", scale="linear"),
        h(view="layers", step=2, variant="Head_1", metric="cosine_distance", layer=0,
          norm="global", exclude0="on", scale="sqrt"),
        h(view="layers", step=2, variant="Head_1", metric="cosine_distance", layer=0,
          norm="global", exclude0="off", scale="log"),
        h(view="layers", step=0, variant="Full", metric="l2_distance", layer=0, norm="row",
          exclude0="on", scale="percentile"),
        h(view="heads", step=2, variant="Full", metric="l2_distance", layer=3, norm="row",
          exclude0="on", scale="linear"),
        h(view="heads", step=1, variant="Full", metric="cosine_distance", layer=4,
          norm="column", exclude0="on", scale="sqrt"),
    ]
    out_modes = [table_mode(d, rng, m, 12) for m in modes]

    # Grid view: step 1, layer 2, Full, l2; image tokens scaled to their own max, the first image
    # token left out.
    gstep, glayer, gvariant, gmetric = 1, 2, "Full", "l2_distance"
    image = [IMAGE_FIRST + k for k in range(N_IMAGE)]
    ivals = {p: d.value(gstep, glayer, gvariant, gmetric, p) for p in image}
    group = [v for p, v in ivals.items() if v is not None and p != IMAGE_FIRST]
    grid_cells = []
    ks = sorted({kk for k in [0, 5, 15, 17, 100, 120, 200, 239] for kk in (k, k + 1, k + 16)})
    for kk in ks:
        p = IMAGE_FIRST + kk
        v = ivals[p]
        cell = {"k": kk, "position": p, "value": v, "token": d.tokens.get(p)}
        if v is not None:
            cell["levels"] = levels(intensity(v, group, "linear"))
        grid_cells.append(cell)
    text_cells = [{"position": p, "token": d.tokens.get(p),
                   "value": d.value(gstep, glayer, gvariant, gmetric, p)}
                  for p in [1, 2, len(TOKENS) - 3]]
    # The same cells with the first image token in the scale, square-root scaling.
    group_all = [v for v in ivals.values() if v is not None]
    grid_all = []
    for cell in grid_cells:
        cell = dict(cell)
        if cell["value"] is not None:
            cell["levels"] = levels(intensity(cell["value"], group_all, "sqrt"))
        grid_all.append(cell)
    grid = {"hash": h(view="grid", step=gstep, variant=gvariant, metric=gmetric, layer=glayer,
                      norm="row", exclude0="on", scale="linear", grid=""),
            "cols": 16, "rows": 16, "image_first": IMAGE_FIRST, "cells": grid_cells,
            "text_cells": text_cells,
            "all_sqrt": {"hash": h(view="grid", step=gstep, variant=gvariant, metric=gmetric,
                                   layer=glayer, norm="row", exclude0="off", scale="sqrt",
                                   grid=""),
                         "cells": grid_all}}

    # Heads view as a share of Full: value = v / Full at the same (step, layer, position).
    sstep, slayer, smetric = 0, 5, "l2_distance"
    share_cells = []
    for _ in range(12):
        p = int(rng.integers(1, d.n_positions))
        v = VARIANTS[int(rng.integers(len(VARIANTS)))]
        x = d.value(sstep, slayer, v, smetric, p)
        f = d.value(sstep, slayer, "Full", smetric, p)
        share = None if x is None or f is None or f == 0 else x / f
        share_cells.append({"variant": v, "position": p, "raw": x, "full": f, "value": share})
    share = {"hash": h(view="heads", step=sstep, variant="Full", metric=smetric, layer=slayer,
                       norm="row", exclude0="on", scale="linear", share="on"),
             "cells": share_cells}

    # Tooltips: layers view, step 2, Head_0, l2, cells with a plain-text token and a value.
    tips = []
    for p in [265, 262, 10]:
        for layer in [1, 4]:
            v = d.value(2, layer, "Head_0", "l2_distance", p)
            if v is not None:
                tips.append({"layer": layer, "position": p, "variant": "Head_0", "step": 2,
                             "metric": "l2_distance", "token": d.tokens.get(p),
                             "value_4dp": "%.4f" % v})
    tooltip = {"hash": h(view="layers", step=2, variant="Head_0", metric="l2_distance", layer=0,
                         norm="row", exclude0="on", scale="linear"), "cells": tips}

    print(json.dumps({"n_positions": d.n_positions, "steps": STEPS, "layers": LAYERS,
                      "variants": VARIANTS, "metrics": METRICS, "modes": out_modes,
                      "grid": grid, "share": share, "tooltip": tooltip}))


if __name__ == "__main__":
    main()
