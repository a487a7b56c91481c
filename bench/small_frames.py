#!/usr/bin/python3
"""Small DataFrames handed from one process to another: trellis put + get
against pickle through /dev/shm, side by side in one run.

For each shape (100 rows; 10, 46 and 200 columns; int64 or str columns) a
producer process makes --count frames and a consumer process reads them:
  - trellis: the producer puts each frame (client.put), the consumer gets
    each one by id (client.get) and touches one value per column;
  - pickle:  the producer pickle.dump()s each frame (protocol 5) to a file
    in /dev/shm, the consumer pickle.load()s it and touches the same.
Each side times its own calls (medians per frame, microseconds); the
handover cost is producer + consumer. Target (issue 11): trellis cheaper
than pickle for every shape.

Usage: small_frames.py [--count 300] [--rounds 5] [--md out.md] [--json out.json]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]

PY = "/usr/bin/python3"
SHAPES = [(10, "int64"), (46, "int64"), (200, "int64"), (10, "str"), (46, "str"), (200, "str")]

# One side of one variant, run as its own process: prints its medians.
SIDE = r'''
import json, os, pickle, statistics, sys, time
import numpy as np, pandas as pd
import trellis
variant, side, cols, kind, count, where = sys.argv[1:7]
cols, count = int(cols), int(count)

def frame(i):
    rng = np.random.default_rng(i)
    if kind == "int64":
        data = {f"c{j}": rng.integers(0, 1 << 40, 100) for j in range(cols)}
    else:
        data = {f"c{j}": [f"v{i}-{j}-{k}" for k in range(100)] for j in range(cols)}
    return pd.DataFrame(data)

times = []
if side == "produce":
    frames = [frame(i) for i in range(count)]
    ids = []
    client = trellis.connect(start=False) if variant == "trellis" else None
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        if client:
            ids.append(int(client.put(f)))
        else:
            with open(os.path.join(where, f"{i}.pkl"), "wb") as out:
                pickle.dump(f, out, protocol=5)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"median_us": statistics.median(times[count // 10:]) * 1e6, "ids": ids}))
else:
    ids = json.loads(sys.stdin.read())["ids"]
    client = trellis.connect(start=False) if variant == "trellis" else None
    for i in range(count):
        t0 = time.perf_counter()
        if client:
            f = client.get(ids[i])
        else:
            with open(os.path.join(where, f"{i}.pkl"), "rb") as src:
                f = pickle.load(src)
        for j in range(0, cols, max(1, cols // 4)):
            f.iat[0, j]
        times.append(time.perf_counter() - t0)
        del f
    print(json.dumps({"median_us": statistics.median(times[count // 10:]) * 1e6}))
'''


def side(variant, which, cols, kind, count, where, stdin=None):
    out = subprocess.run([PY, "-c", SIDE, variant, which, str(cols), kind, str(count), where],
                         input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--md", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import trellis
    from python_bench import emit_report, machine_info, machine_line
    work = tempfile.mkdtemp(prefix="trellis-sf-")
    shm = tempfile.mkdtemp(prefix="trellis-sf-", dir="/dev/shm")
    os.environ["TRELLIS_SOCKET"] = os.path.join(work, "d.sock")
    daemon = trellis.start_daemon(size="2G", detach=True)
    # Rounds interleave the variants (their order alternating) so that a
    # noisy stretch of this shared VM hits both alike; each figure is the
    # median over rounds of a round's median.
    samples = {(cols, kind): {k: [] for k in ("trellis_put_us", "trellis_get_us",
                                              "pickle_put_us", "pickle_get_us")}
               for cols, kind in SHAPES}
    try:
        for rnd in range(args.rounds):
            for cols, kind in SHAPES:
                variants = ("trellis", "pickle") if rnd % 2 == 0 else ("pickle", "trellis")
                for variant in variants:
                    made = side(variant, "produce", cols, kind, args.count, shm)
                    read = side(variant, "consume", cols, kind, args.count, shm, stdin=made)
                    samples[cols, kind][f"{variant}_put_us"].append(json.loads(made)["median_us"])
                    samples[cols, kind][f"{variant}_get_us"].append(json.loads(read)["median_us"])
                    if variant == "trellis":
                        with trellis.connect(start=False) as c:
                            for oid in json.loads(made)["ids"]:
                                c.delete(oid)
                    else:
                        for name in os.listdir(shm):
                            os.unlink(os.path.join(shm, name))
            print(f"round {rnd + 1}/{args.rounds} done", flush=True)
        rows = []
        for (cols, kind), got in samples.items():
            r = {"columns": cols, "kind": kind, "rounds": got}
            for key, values in got.items():
                r[key] = statistics.median(values)
            r["trellis_us"] = r["trellis_put_us"] + r["trellis_get_us"]
            r["pickle_us"] = r["pickle_put_us"] + r["pickle_get_us"]
            rows.append(r)
            print(f"{cols:>3} {kind:<5}: trellis {r['trellis_us']:7.1f} us "
                  f"(put {r['trellis_put_us']:.1f} + get {r['trellis_get_us']:.1f}), pickle "
                  f"{r['pickle_us']:7.1f} us (dump {r['pickle_put_us']:.1f} + load "
                  f"{r['pickle_get_us']:.1f})", flush=True)
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    m = machine_info()
    lines = ["# Small DataFrames from one process to another: trellis vs pickle via /dev/shm",
             "", f"Command: `{' '.join(sys.argv)}`", "",
             machine_line(m), "",
             f"100-row frames, {args.count} per shape and round, {args.rounds} rounds "
             "interleaving the variants; per frame in microseconds, the median over rounds "
             "of each round's median (the first 10% of each side left out as warm-up).", "",
             "| columns | kind | trellis put | trellis get | trellis total | pickle dump | "
             "pickle load | pickle total | trellis / pickle |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['columns']} | {r['kind']} | {r['trellis_put_us']:.1f} | "
                     f"{r['trellis_get_us']:.1f} | {r['trellis_us']:.1f} | "
                     f"{r['pickle_put_us']:.1f} | {r['pickle_get_us']:.1f} | "
                     f"{r['pickle_us']:.1f} | {r['trellis_us'] / r['pickle_us']:.2f} |")
    met = all(r["trellis_us"] < r["pickle_us"] for r in rows)
    lines += ["", f"Target: trellis cheaper than pickle for every shape: "
              f"{'met' if met else 'NOT met'}."]
    emit_report(lines, args.md, args.json, {"machine": m, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
