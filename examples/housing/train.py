#!/usr/bin/python3
"""Step 2 of the housing pipeline: fit a linear regression.

Reads x_train and y_train from the exchange, fits scikit-learn's
LinearRegression and hands the fitted model to the test step through the
same exchange. The code mirrors the seed's train.py.
"""

import time

_T0 = time.perf_counter()

# The seed's train.py imports pandas too; without it, unpickling the frames
# would import pandas inside the timed read.
import pandas as pd  # noqa: E402,F401
from sklearn.linear_model import LinearRegression  # noqa: E402

from common import MODEL_NAME, emit_report  # noqa: E402
from exchange import run_step, step_arg_parser  # noqa: E402


def main():
    args = step_arg_parser(__doc__.splitlines()[0]).parse_args()
    with run_step(args, _T0) as (exchange, timer):
        with timer.phase("read"):
            x_train_data = exchange.get("x_train")
            y_train_data = exchange.get("y_train")
        with timer.phase("compute"):
            model = LinearRegression()
            model.fit(x_train_data, y_train_data)
        with timer.phase("write"):
            exchange.put(MODEL_NAME, model)
    emit_report("train", args.exchange, timer, train_rows=len(x_train_data))


if __name__ == "__main__":
    main()
