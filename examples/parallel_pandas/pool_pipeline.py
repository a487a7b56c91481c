#!/usr/bin/python3
"""The alternative a pandas user reaches for first: the serial job with
classify_df mapped over 100-row chunks by a multiprocessing.Pool (the
chunks and results travel pickled through pipes), then concatenated and
written. Same input and output formats as old_pipeline.py.

Usage: pool_pipeline.py INPUT OUTPUT [--workers 2] [--rows 100]"""

import argparse
import multiprocessing
import os
import sys

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classifier import classify_df  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rows", type=int, default=100, help="rows per chunk")
    args = p.parse_args(argv)
    df = pd.read_csv(args.input, index_col=0, dtype=str, engine="python")
    chunks = [df.iloc[i:i + args.rows] for i in range(0, len(df), args.rows)]
    with multiprocessing.Pool(args.workers) as pool:
        results = pool.map(classify_df, chunks)
    pd.concat(results).to_csv(args.output, header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
