"""A DataFrame put from Python is a trellis::DataFrame in C++ and back."""

import json
import os
import subprocess

import numpy as np
import pandas as pd

from trellis import _config

INTEROP = os.path.join(_config.BIN_DIR, "trellis_df_interop")


def run_interop(*args):
    out = subprocess.run([INTEROP, *args], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_cxx_put_read_by_python(client):
    rows = 1001  # 8008-byte columns: C++ pads each to a 64-byte boundary
    run_interop("put", client.socket, "from_cxx", str(rows))
    frame = client.get(name="from_cxx")
    i = np.arange(rows)
    want = pd.DataFrame({"i64": 3 * i - 7, "f64": i / 2, "flag": i % 3 == 0,
                         "u8": (i % 251).astype(np.uint8), "i64b": i * i})
    pd.testing.assert_frame_equal(frame, want, check_exact=True)
    assert isinstance(frame.index, pd.RangeIndex)
    for name in want:
        values = frame[name].values
        assert values.ctypes.data in client.arena and not values.flags.writeable
    # The two padded int64 columns come back as one strided 2-d block.
    int_blocks = [b for b in frame._mgr.blocks if b.dtype == np.int64]
    assert len(int_blocks) == 1 and int_blocks[0].values.shape == (2, rows)


def test_python_put_read_by_cxx(client):
    i = np.arange(500)
    frame = pd.DataFrame({"i64": 3 * i - 7, "f64": i / 4, "flag": i % 2 == 0,
                          "u8": (i % 7).astype(np.uint8), "label": [f"r{v}" for v in i],
                          "f32": (i * 0.5).astype(np.float32), "i64b": i * i,
                          "label2": [f"s{v}" for v in i]},
                         index=pd.Index(i[::-1] * 10, name="key"))
    client.put(frame, name="from_py")
    got = run_interop("describe", client.socket, "from_py")
    assert got["num_rows"] == 500
    assert got["index"]["typename"] == "trellis::Tensor"
    assert got["index"]["fields"]["dtype"] == "<i8"
    columns = {c["name"]: c for c in got["columns"]}
    assert list(columns) == list(frame.columns)
    assert columns["label"]["typename"] == "trellis::StringColumn"
    # The two int64 columns are one 2-d block, as are the two str columns;
    # C++ reads each int64 column as a row of its block.
    assert sorted([columns["i64"]["block_row"], columns["i64b"]["block_row"]]) == [0, 1]
    assert sorted([columns["label"]["block_row"], columns["label2"]["block_row"]]) == [0, 1]
    assert columns["f64"]["block_row"] == -1
    for name, dtype in [("i64", "<i8"), ("f64", "<f8"), ("flag", "|b1"), ("u8", "|u1"),
                        ("f32", "<f4"), ("i64b", "<i8")]:
        col = columns[name]
        assert col["typename"] == "trellis::Tensor" and col["dtype"] == dtype
        values = frame[name].to_numpy().astype(np.float64)
        assert col["sum"] == values.sum()
        assert col["first"] == values[0] and col["last"] == values[-1]


def test_range_index_read_by_cxx(client):
    client.put(pd.DataFrame({"a": np.arange(10)}, index=pd.RangeIndex(5, 25, 2)), name="r")
    got = run_interop("describe", client.socket, "r")
    assert got["index"] == {"typename": "trellis::RangeIndex",
                            "fields": {"start": 5, "stop": 25, "step": 2, "name": None}}
    assert got["columns"][0]["sum"] == 45
