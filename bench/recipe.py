"""The Python writer's recipe (seed note 000: float32 rounded to 4 decimals, categories, zstd),
applied by `cargo xtask bench` to the synthetic data of `mask_impact::synth`, so that the files it
times are in the users' real format.

    python3 bench/recipe.py RAW.parquet OUT_STEM FORMAT...   (FORMAT: parquet, csv, json)

writes OUT_STEM.parquet / OUT_STEM.csv / OUT_STEM.json, each through a temporary name so that an
interrupted run leaves no half-written file in the cache.
"""

import os
import sys

import pandas as pd


def apply_recipe(df: pd.DataFrame) -> pd.DataFrame:
    """The seed note's optimisation, verbatim."""
    df['l2_distance'] = df['l2_distance'].round(4).astype('float32')
    df['cosine_distance'] = df['cosine_distance'].round(4).astype('float32')
    df['token_masked'] = df['token_masked'].astype('category')
    df['variant'] = df['variant'].astype('category')
    return df


# The experiment writes the prompt's name and text on every row (as the real files have them); a
# synthetic prompt of the usual length, matching the synthetic tokens.
PROMPT_NAME = 'image_question'
CONFIG_PROMPT = ("<|im_start|>user\nWhat color is the person's hair? Answer in one word."
                 "<image><|im_end|>\n<|im_start|>assistant\n")


def main() -> None:
    raw, stem, *formats = sys.argv[1:]
    df = pd.read_parquet(raw)
    if 'prompt_name' not in df.columns:
        df['prompt_name'] = pd.Categorical([PROMPT_NAME] * len(df))
        df['config_prompt'] = pd.Categorical([CONFIG_PROMPT] * len(df))
    df = apply_recipe(df)
    for fmt in formats:
        out = f'{stem}.{fmt}'
        tmp = f'{out}.tmp'
        if fmt == 'parquet':
            df.to_parquet(tmp, compression='zstd', index=False)
        elif fmt == 'csv':
            df.to_csv(tmp, index=False)
        elif fmt == 'json':
            df.to_json(tmp, orient='records')
        else:
            raise SystemExit(f'unknown format {fmt!r}')
        os.replace(tmp, out)
        print(f'recipe: {out} ({os.path.getsize(out)} bytes, {len(df)} rows)', file=sys.stderr)


if __name__ == '__main__':
    main()
