#!/usr/bin/python3
"""The seed's serial job: read the whole CSV, classify, write the CSV.

Usage: old_pipeline.py INPUT OUTPUT"""

import os
import sys

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classifier import classify_df  # noqa: E402


def main(argv):
    infile, outfile = argv
    df = pd.read_csv(infile, index_col=0, dtype=str, engine="python")
    classify_df(df)
    df.to_csv(outfile, header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
