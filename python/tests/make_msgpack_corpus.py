"""Writes the seed corpora of the MessagePack fuzz targets from real traffic.

    PYTHONPATH=build/python /usr/bin/python3 python/tests/make_msgpack_corpus.py

Starts a trellisd, puts realistic values through the Python package (a
46-column int64 DataFrame as bench/python_bench.py uses, a mixed-dtype
frame, a 200-column frame, a tensor, a Series, nested builtins, a pickled
value) and reads each back, with a recording proxy between the client and
the daemon. Every frame body that crossed the socket is real: CreateObject
requests as the extension's tree writer (json_convert.cc) wrote them,
GetMeta replies as the daemon's encoder (object_table.cc) wrote them.

Writes
  python/src/tree_decode_fuzz_corpus/<name>   control byte + GetMeta reply
      body (tree_decode_fuzz.cc: bit 0 of the control byte = frame_blocks);
  src/common/fuzz_corpus/<name>               the two control bytes of
      protocol_fuzz.cc + the whole frame (the CreateObject requests);
and bench/msgpack_bench.cc reads its bodies from these files. (The
regress_* seeds there are inputs the fuzzers once failed on, kept by hand.)
"""

import os
import sys
import tempfile

import numpy as np
import pandas as pd

import trellis
from trellis import _daemon

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from msgpack_wire import (CREATE_OBJECT, GET_META, RELEASE, REPLY,  # noqa: E402
                          RecordingProxy, frame)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TREE_CORPUS = os.path.join(ROOT, "python", "src", "tree_decode_fuzz_corpus")
FRAME_CORPUS = os.path.join(ROOT, "src", "common", "fuzz_corpus")


class Opaque:
    """No converter: stored pickled."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Opaque) and self.value == other.value


def values():
    rng = np.random.default_rng(1)
    rows = 100
    yield "df46_int64", pd.DataFrame(np.arange(rows * 46, dtype=np.int64).reshape(rows, 46),
                                     columns=[f"c{i}" for i in range(46)])
    yield "df_mixed", pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "price": rng.random(rows),
        "rooms": rng.integers(1, 8, rows).astype(np.int32),
        "flag": rng.random(rows) > 0.5,
        "city": [f"city{i % 7}" for i in range(rows)],
        "when": pd.date_range("2024-01-01", periods=rows, freq="h"),
        "kind": pd.Categorical([("a", "b", "c")[i % 3] for i in range(rows)]),
        "maybe": pd.array([None if i % 5 == 0 else i for i in range(rows)], dtype="Int64"),
    })
    yield "df200_int64", pd.DataFrame(np.zeros((4, 200), dtype=np.int64),
                                      columns=[f"c{i}" for i in range(200)])
    yield "tensor", np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    yield "series", pd.Series(np.arange(10.0), name="s")
    yield "builtins", {"a": [1, -2, 3.5, None, True, "x" * 40, b"\x00\xff"],
                       "nested": {"k": [[1, [2, [3]]], {"deep": {"er": [2 ** 63, -2 ** 63]}}]}}
    yield "pickled", Opaque({1, 2, 3})


def main():
    workdir = tempfile.mkdtemp(prefix="trellis-corpus-", dir="/tmp")
    daemon = _daemon.launch(os.path.join(workdir, "d.sock"), size="256M", detach=False)
    try:
        proxy = RecordingProxy(os.path.join(workdir, "p.sock"), daemon.socket)
        names = []
        with trellis.connect(proxy.path, start=False) as client:
            for name, value in values():
                oid = client.put(value)
                client.get(oid)
                names.append(name)
        proxy.wait()
    finally:
        daemon.stop()
    requests = [b for t, b in proxy.frames("request") if t == CREATE_OBJECT]
    replies = iter(proxy.frames("reply"))
    metas = []
    for kind, body in proxy.frames("request"):
        if kind == RELEASE:  # the one request without a reply
            continue
        reply_kind, reply = next(replies)
        if kind == GET_META:
            assert reply_kind == REPLY, reply_kind
            metas.append(reply)
    assert len(requests) == len(metas) == len(names), (len(requests), len(metas))
    os.makedirs(TREE_CORPUS, exist_ok=True)
    for name, reply in zip(names, metas):
        if name == "df200_int64":
            continue  # 42 KB: slows the fuzzer down; df46 covers the same
        for blocks in ((0, 1) if name.startswith("df") else (0,)):
            path = os.path.join(TREE_CORPUS, f"get_meta_{name}" + ("_blocks" if blocks else ""))
            with open(path, "wb") as f:
                f.write(bytes([blocks]) + reply)
    for name, body in zip(names, requests):
        if name in ("df200_int64", "df_mixed", "builtins"):
            with open(os.path.join(FRAME_CORPUS, f"create_object_{name}"), "wb") as f:
                f.write(b"\x00\x00" + frame(CREATE_OBJECT, body))
    print(f"wrote seeds to {TREE_CORPUS} and {FRAME_CORPUS}")


if __name__ == "__main__":
    sys.exit(main())
