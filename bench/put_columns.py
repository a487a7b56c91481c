"""Put overhead of wide, small DataFrames: where a put's fixed cost per
column goes, against pickling the same frame to /dev/shm in the same run.

    PYTHONPATH=build/python /usr/bin/python3 bench/put_columns.py [--rows 100]

A put of a frame of C int64 columns and R rows is: encoding the tree in
Python (`encode`), CreateBlobs (`create_blob`), copying the columns in
(`write`) and CreateObject (`create_object`, which carries the tree of C + 2
nodes to the daemon). With few rows the copy is nothing and the tree is
everything, so this shows the per-column cost of the metadata path. Prints
a Markdown table of medians (microseconds) and writes it to
bench/results/put_columns.md with the machine it ran on.
"""

import argparse
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_bench import machine_info  # noqa: E402

import trellis  # noqa: E402
from trellis import _codec, _daemon  # noqa: E402


def time_put(client, frame, reps):
    """Medians (us) of the four parts of client.put(frame)."""
    parts = {"encode": [], "create_blob": [], "write": [], "create_object": []}
    for _ in range(reps):
        t0 = time.perf_counter()
        tree, packer = _codec.encode_root(frame)
        t1 = time.perf_counter()
        writer = client._core.create_blob(packer.size)
        t2 = time.perf_counter()
        packer.write(writer)
        t3 = time.perf_counter()
        oid = client._core.create_object(tree, _codec.BLOB, writer, "", False, True)
        t4 = time.perf_counter()
        client.delete(oid)
        for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[name].append(seconds)
    return {name: statistics.median(v) * 1e6 for name, v in parts.items()}


def time_pickle(frame, reps, path):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            pickle.dump(frame, f, protocol=5)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--columns", default="1,10,46,200")
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results", "put_columns.md"))
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="trellis-putcols-", dir="/tmp")
    daemon = _daemon.launch(os.path.join(workdir, "d.sock"), size="1G", detach=False)
    rows = []
    try:
        client = trellis.connect(daemon.socket, start=False)
        for count in (int(c) for c in args.columns.split(",")):
            frame = pd.DataFrame(np.arange(args.rows * count, dtype=np.int64)
                                 .reshape(args.rows, count),
                                 columns=[f"c{i}" for i in range(count)])
            time_put(client, frame, 20)  # warm-up
            put = time_put(client, frame, args.reps)
            total = sum(put.values())
            shm = time_pickle(frame, args.reps, f"/dev/shm/trellis-putcols-{os.getpid()}.pkl")
            rows.append((count, put, total, shm))
        client.close()
    finally:
        daemon.stop()
        if os.path.exists(f"/dev/shm/trellis-putcols-{os.getpid()}.pkl"):
            os.unlink(f"/dev/shm/trellis-putcols-{os.getpid()}.pkl")
        shutil.rmtree(workdir, ignore_errors=True)
    m = machine_info()
    lines = [
        "# Put overhead of wide, small DataFrames",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} CPUs, {m['memory_gib']} GiB, kernel {m['kernel']}; "
        f"Python {m['python']}, numpy {m['numpy']}, pandas {m['pandas']}; commit {m['commit']}, "
        f"{m['date']}.",
        "",
        f"Command: `/usr/bin/python3 bench/put_columns.py --rows {args.rows} "
        f"--columns {args.columns} --reps {args.reps}`",
        "",
        f"Medians of {args.reps} puts (each followed by a delete) of a {args.rows}-row frame "
        "of int64 columns, microseconds; pickle: `pickle.dump(frame, f, protocol=5)` to a "
        "file in /dev/shm, same run.",
        "",
        "| columns | encode | create_blob | write | create_object | put total | "
        "per column | pickle to /dev/shm | put / pickle |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, put, total, shm in rows:
        lines.append(f"| {count} | {put['encode']:.0f} | {put['create_blob']:.0f} | "
                     f"{put['write']:.0f} | {put['create_object']:.0f} | {total:.0f} | "
                     f"{total / count:.1f} | {shm:.0f} | {total / shm:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
