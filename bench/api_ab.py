#!/usr/bin/python3
"""A/B of the Python package's per-call cost: put + get of small values
through one daemon, with two builds of the pure-Python package side by side
in one run (e.g. the last commit's and the working tree's), to show that a
change to the put/get path costs nothing for existing types.

Each round runs one process per package (order alternating), each timing
--loops put+get pairs per value kind after a warm-up; medians over
--rounds. The `_core` extension is the same for both (copied into the base
directory by the caller), so only the Python layer differs.

  rm -rf /tmp/base && mkdir -p /tmp/base && git archive HEAD python/trellis \\
      | tar -x -C /tmp/base --strip-components=1 \\
      && cp build/python/trellis/_core*.so build/python/trellis/_config.py /tmp/base/trellis/
  bench/api_ab.py --base /tmp/base --new build/python --md bench/results/api_ab.md
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = "/usr/bin/python3"

WORKER = r'''
import json, sys, time
import numpy as np, pandas as pd
import trellis
c = trellis.connect(sys.argv[1], start=False)
loops = int(sys.argv[2])
rng = np.random.default_rng(0)
values = {
    "int": 7,
    "12-element array": np.arange(12.0),
    "dict of 3 arrays": {k: np.arange(100) for k in "abc"},
    "tuple of 5 builtins": (1, 2.5, "x", None, b"y"),
    "46 int64 cols x 100 rows": pd.DataFrame(rng.integers(0, 100, (100, 46)),
                                             columns=[f"c{i}" for i in range(46)]),
    "10 str cols x 100 rows": pd.DataFrame({f"s{i}": [f"v{j}" for j in range(100)]
                                            for i in range(10)}),
    "1 MB array": np.ones(1 << 17),
}
out = {}
for label, value in values.items():
    for _ in range(max(20, loops // 10)):
        oid = c.put(value)
        c.get(oid)
        c.delete(oid)
    t0 = time.perf_counter()
    for _ in range(loops):
        oid = c.put(value)
        c.get(oid)
        c.delete(oid)
    out[label] = (time.perf_counter() - t0) / loops * 1e6
print(json.dumps(out))
'''


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="directory holding the base trellis package")
    p.add_argument("--new", required=True, help="directory holding the new trellis package")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--loops", type=int, default=2000)
    p.add_argument("--md")
    args = p.parse_args(argv)
    sys.path.insert(0, args.new)
    import trellis
    sys.path[:0] = [str(ROOT / "bench")]
    from python_bench import machine_info, machine_line

    work = tempfile.mkdtemp(prefix="trellis-ab-")
    socket = os.path.join(work, "d.sock")
    daemon = trellis._daemon.launch(socket, size="1G", detach=False)
    times = {"base": [], "new": []}
    try:
        for r in range(args.rounds):
            order = ("base", "new") if r % 2 == 0 else ("new", "base")
            for which in order:
                env = dict(os.environ, PYTHONPATH=getattr(args, which))
                run = subprocess.run([PY, "-c", WORKER, socket, str(args.loops)], env=env,
                                     capture_output=True, text=True)
                if run.returncode != 0:
                    raise SystemExit(f"{which} worker failed:\n{run.stderr}")
                times[which].append(json.loads(run.stdout))
    finally:
        daemon.stop()
    labels = list(times["base"][0])
    lines = [
        "# put + get + delete per call: base package vs new, one run", "",
        f"Command: `bench/api_ab.py --base {args.base} --new {args.new} --rounds "
        f"{args.rounds} --loops {args.loops}`", "",
        machine_line(machine_info()), "",
        "One process per package per round (order alternating), each timing "
        f"{args.loops} put + get + delete per value after a warm-up; medians of "
        f"{args.rounds} rounds, in microseconds per put + get + delete.", "",
        "| value | base (us) | new (us) | new / base |", "|---|---:|---:|---:|",
    ]
    for label in labels:
        base = statistics.median(t[label] for t in times["base"])
        new = statistics.median(t[label] for t in times["new"])
        lines.append(f"| {label} | {base:.1f} | {new:.1f} | {new / base:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()
