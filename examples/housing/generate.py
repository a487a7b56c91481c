#!/usr/bin/python3
"""Generates the synthetic house-price table of the seed documents.

Same 46 integer columns, names and value ranges as the seed's generator
(`np.random.randint(low, high)`, high exclusive), but seeded and with the row
count as a parameter. The table is written as a pandas pickle on local disk,
the way the seed stores `df.pkl`; every exchange variant loads it with
pd.read_pickle, so loading the raw input is identical across variants.

Usage: generate.py --rows 2000000 --seed 0 --out /tmp/housing.pkl
"""

import argparse
import os
import time

import numpy as np
import pandas as pd

#: (column, low, high) with high exclusive, in the seed's column order.
COLUMNS = (
    ("Id", 1, 100000),
    ("MSSubClass", 20, 201),
    ("LotFrontage", 50, 151),
    ("LotArea", 5000, 20001),
    ("OverallQual", 1, 11),
    ("OverallCond", 1, 11),
    ("YearBuilt", 1900, 2022),
    ("YearRemodAdd", 1900, 2022),
    ("MasVnrArea", 0, 1001),
    ("BsmtFinSF1", 0, 2001),
    ("BsmtFinSF2", 0, 1001),
    ("BsmtUnfSF", 0, 2001),
    ("TotalBsmtSF", 0, 3001),
    ("1stFlrSF", 500, 4001),
    ("2ndFlrSF", 0, 2001),
    ("LowQualFinSF", 0, 201),
    ("GrLivArea", 600, 5001),
    ("BsmtFullBath", 0, 4),
    ("BsmtHalfBath", 0, 3),
    ("FullBath", 0, 5),
    ("HalfBath", 0, 3),
    ("BedroomAbvGr", 0, 11),
    ("KitchenAbvGr", 0, 4),
    ("TotRmsAbvGrd", 0, 16),
    ("Fireplaces", 0, 4),
    ("GarageYrBlt", 1900, 2022),
    ("GarageCars", 0, 5),
    ("GarageArea", 0, 1001),
    ("WoodDeckSF", 0, 501),
    ("OpenPorchSF", 0, 301),
    ("EnclosedPorch", 0, 201),
    ("3SsnPorch", 0, 101),
    ("ScreenPorch", 0, 201),
    ("PoolArea", 0, 301),
    ("MiscVal", 0, 5001),
    ("TotalRooms", 2, 11),
    ("GarageAge", 1, 31),
    ("RemodAge", 1, 31),
    ("HouseAge", 1, 31),
    ("TotalBath", 1, 5),
    ("TotalPorchSF", 1, 1001),
    ("TotalSF", 1000, 6001),
    ("TotalArea", 1000, 6001),
    ("MoSold", 1, 13),
    ("YrSold", 2006, 2022),
    ("SalePrice", 50000, 800001),
)

BYTES_PER_ROW = 8 * len(COLUMNS)


def generate(rows, seed):
    """Returns a DataFrame of `rows` rows; equal (rows, seed) give equal data.

    The columns are int64 and share one (46, rows) array, so the table costs
    rows * 368 bytes and is built without an extra consolidating copy.
    """
    rng = np.random.default_rng(seed)
    values = np.empty((len(COLUMNS), rows), dtype=np.int64)
    for i, (_, low, high) in enumerate(COLUMNS):
        values[i] = rng.integers(low, high, size=rows, dtype=np.int64)
    names = [name for name, _, _ in COLUMNS]
    # values.T is a view; pandas keeps it as the frame's single block.
    return pd.DataFrame(values.T, columns=names, copy=False)


def write_table(df, path):
    """Writes `df` as a pandas pickle at `path` (atomically, via a temp file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    df.to_pickle(tmp)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="pickle file to write")
    args = parser.parse_args()
    t0 = time.perf_counter()
    df = generate(args.rows, args.seed)
    t1 = time.perf_counter()
    write_table(df, args.out)
    t2 = time.perf_counter()
    print(f"generated {args.rows} rows ({args.rows * BYTES_PER_ROW / 1e9:.2f} GB)"
          f" in {t1 - t0:.2f} s, wrote {args.out} in {t2 - t1:.2f} s")


if __name__ == "__main__":
    main()
