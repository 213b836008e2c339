"""The seed note's migration recipe (JSON or CSV → zstd Parquet with pandas), timed by
`cargo xtask bench` against `mask-impact convert` on the same input.

    python3 bench/pandas_convert.py IN.json|IN.csv|IN.parquet OUT.parquet
"""

import sys

import pandas as pd

from recipe import apply_recipe


def main() -> None:
    src, out = sys.argv[1:]
    if src.endswith('.csv'):
        df = pd.read_csv(src)
    elif src.endswith('.parquet'):
        df = pd.read_parquet(src)
    else:
        df = pd.read_json(src)
    apply_recipe(df).to_parquet(out, compression='zstd', index=False)


if __name__ == '__main__':
    main()
