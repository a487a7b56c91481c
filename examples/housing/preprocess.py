#!/usr/bin/python3
"""Step 1 of the housing pipeline: clean and split the raw table.

Loads the raw table (pandas pickle written by generate.py), drops the rows
with GrLivArea > 4800, splits features from the SalePrice target, makes an
80/20 train/test split and hands x_train, x_test, y_train, y_test to the next
steps through the chosen exchange. The code mirrors the seed's preprocess.py.
"""

import time

_T0 = time.perf_counter()

import pandas as pd  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from common import (DATA_NAMES, MAX_GR_LIV_AREA, RANDOM_STATE, TARGET,  # noqa: E402
                    TEST_SIZE, emit_report)
from exchange import run_step, step_arg_parser  # noqa: E402


def nbytes(obj):
    """Bytes of a DataFrame's or Series' values plus its index."""
    usage = obj.memory_usage(index=True)
    return int(usage.sum()) if hasattr(usage, "sum") else int(usage)


def main():
    parser = step_arg_parser(__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="raw table (pickle file)")
    source.add_argument("--input-object", metavar="NAME",
                        help="raw table as a trellis object of that name "
                             "(trellis.get(name=NAME, fetch=True))")
    args = parser.parse_args()

    with run_step(args, _T0) as (exchange, timer):
        with timer.phase("load"):
            if args.input_object:
                import trellis
                df = trellis.get(name=args.input_object, fetch=True)
            else:
                df = pd.read_pickle(args.input)
        raw_rows = len(df)
        with timer.phase("compute"):
            # The seed's preprocessing, inline so that each intermediate
            # table is released as soon as the next one exists.
            df = df.drop(df[(df["GrLivArea"] > MAX_GR_LIV_AREA)].index)
            # .copy(): a column of a single-block frame is a view that would
            # keep the whole filtered table alive until the split is done.
            y = df[TARGET].copy()
            X = df.drop(TARGET, axis=1)  # Features
            del df
            x_train, x_test, y_train, y_test = train_test_split(
                X, y, test_size=TEST_SIZE, random_state=RANDOM_STATE)
            del X, y
        outputs = dict(zip(DATA_NAMES, (x_train, x_test, y_train, y_test)))
        for name, value in outputs.items():
            with timer.phase("write"):
                exchange.put(name, value)
    emit_report("preprocess", args.exchange, timer, raw_rows=raw_rows,
                train_rows=len(x_train), test_rows=len(x_test),
                written_bytes=sum(map(nbytes, outputs.values())))


if __name__ == "__main__":
    main()
