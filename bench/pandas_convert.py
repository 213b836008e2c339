"""The seed note's migration recipe (JSON or CSV → zstd Parquet with pandas), timed by
`cargo xtask bench` against `mask-impact convert` on the same input.

    python3 bench/pandas_convert.py IN.json|IN.csv OUT.parquet
"""

import sys

import pandas as pd

from recipe import apply_recipe


def main() -> None:
    src, out = sys.argv[1:]
    df = pd.read_csv(src) if src.endswith('.csv') else pd.read_json(src)
    apply_recipe(df).to_parquet(out, compression='zstd', index=False)


if __name__ == '__main__':
    main()
