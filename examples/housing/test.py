#!/usr/bin/python3
"""Step 3 of the housing pipeline: evaluate the model.

Reads x_test, y_test and the model from the exchange, predicts, computes the
mean squared error and appends it (repr, one line) to the output file. The
code mirrors the seed's test.py.
"""

import time

_T0 = time.perf_counter()

# As in the seed's test.py: importing pandas and LinearRegression here keeps
# their import time out of the timed reads that unpickle a frame and a model.
import pandas as pd  # noqa: E402,F401
from sklearn.linear_model import LinearRegression  # noqa: E402,F401
from sklearn.metrics import mean_squared_error  # noqa: E402

from common import MODEL_NAME, emit_report  # noqa: E402
from exchange import run_step, step_arg_parser  # noqa: E402


def main():
    parser = step_arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", required=True,
                        help="text file the MSE is appended to")
    args = parser.parse_args()
    with run_step(args, _T0) as (exchange, timer):
        with timer.phase("read"):
            x_test_data = exchange.get("x_test")
            y_test_data = exchange.get("y_test")
            model = exchange.get(MODEL_NAME)
        with timer.phase("compute"):
            y_pred = model.predict(x_test_data)
            err = mean_squared_error(y_test_data, y_pred)
        with open(args.output, "a") as f:
            f.write(repr(float(err)) + "\n")
    emit_report("test", args.exchange, timer, mse=float(err),
                test_rows=len(x_test_data))


if __name__ == "__main__":
    main()
