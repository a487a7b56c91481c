#!/usr/bin/python3
"""Small DataFrames handed from one process to another: trellis put + get
against pickle through /dev/shm, side by side in one run.

For each shape (100 rows; 10, 46 and 200 columns; int64 or str columns) a
producer process makes --count frames and a consumer process reads them:
  - trellis: the producer puts each frame (client.put), the consumer gets
    each one by id (client.get) and reads a value of every fourth column;
  - pickle:  the producer pickle.dump()s each frame (protocol 5) to a file
    in /dev/shm, the consumer pickle.load()s it and reads the same.
The same two processes do both, frame by frame, the order alternating, so
both meet the same moment of this shared VM. Each side times its own calls
(medians per frame, microseconds); the handover cost is producer +
consumer. Target (issue 11): trellis cheaper
than pickle for every shape.

With --busy-poll-us N the daemon polls N microseconds for the next request
before it sleeps, or follows the gaps between requests with auto
(trellisd --busy-poll-us; default 0, as deployed). --huge-pages off keeps the
arena in 4 KiB pages (default auto: 2 MiB ones, from a memfd where the
kernel's shmem THP policy gives them, else from a tmpfs of the daemon's
own). With --shmem-thp POLICY (root) the kernel's shmem THP policy is
POLICY for the run and put back after it. The report says which pages the
arena had.

Usage: small_frames.py [--count 300] [--rounds 5] [--busy-poll-us 0|N|auto]
                       [--huge-pages auto|off] [--shmem-thp advise]
                       [--md out.md] [--json out.json]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHMEM_THP = Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
sys.path[:0] = [str(ROOT / "bench")]

PY = "/usr/bin/python3"
SHAPES = [(10, "int64"), (46, "int64"), (200, "int64"), (10, "str"), (46, "str"), (200, "str")]

# One side (producer or consumer) of both variants, run as its own process:
# frame by frame it does the trellis call and the pickle call, the order
# alternating, each on its own copy of the frame, so that whatever this
# shared VM is doing at the moment costs both alike. Prints both medians.
SIDE = r'''
import json, os, pickle, statistics, sys, time
import numpy as np, pandas as pd
import trellis
side, cols, kind, count, where, variants = sys.argv[1:7]
WINDOW = 8  # stream: frames produced and not yet consumed, at most
cols, count, variants = int(cols), int(count), variants.split(",")

def frame(i):
    rng = np.random.default_rng(i)
    if kind == "int64":
        data = {f"c{j}": rng.integers(0, 1 << 40, 100) for j in range(cols)}
    else:
        data = {f"c{j}": [f"v{i}-{j}-{k}" for k in range(100)] for j in range(cols)}
    return pd.DataFrame(data)

client = trellis.connect(start=False)
times = {v: [] for v in variants}

def timed(variant, fn):
    t0 = time.perf_counter()
    out = fn()
    times[variant].append(time.perf_counter() - t0)
    return out

def touch(f):  # read one value of every fourth column
    for j in range(0, cols, max(1, cols // 4)):
        f.iat[0, j]

def dump(f, i):
    with open(os.path.join(where, f"{i}.pkl"), "wb") as out:
        pickle.dump(f, out, protocol=5)

def load(i):
    with open(os.path.join(where, f"{i}.pkl"), "rb") as src:
        f = pickle.load(src)
    touch(f)

def get(oid):
    f = client.get(oid)
    touch(f)

def both(i, steps):  # the variants' steps, the order alternating by frame
    steps = [steps[v] for v in variants]
    for step in steps[::1 if i % 2 == 0 else -1]:
        step()

ids = []
if side == "stream-produce":  # frame numbers and ids out on stdout, acks in
    pairs = [(frame(i), frame(i)) for i in range(count)]
    for i, (mine, theirs) in enumerate(pairs):
        if i >= WINDOW:
            sys.stdin.readline()  # frame i - WINDOW has been consumed
        oid = [0]
        both(i, {"trellis": lambda: oid.__setitem__(
                     0, int(timed("trellis", lambda: client.put(mine)))),
                 "pickle": lambda: timed("pickle", lambda: dump(theirs, i))})
        sys.stdout.write(f"{i} {oid[0]}\n")
        sys.stdout.flush()
    for _ in range(min(count, WINDOW)):
        sys.stdin.readline()
elif side == "stream-consume":  # reads, then frees what it read, and acks
    for line in sys.stdin:
        i, oid = map(int, line.split())
        both(i, {"trellis": lambda: timed("trellis", lambda: get(oid)),
                 "pickle": lambda: timed("pickle", lambda: load(i))})
        if "trellis" in variants:
            client.delete(oid)
        if "pickle" in variants:
            os.unlink(os.path.join(where, f"{i}.pkl"))
        sys.stdout.write("\n")
        sys.stdout.flush()
elif side == "produce":
    pairs = [(frame(i), frame(i)) for i in range(count)]
    for i, (mine, theirs) in enumerate(pairs):
        both(i, {"trellis": lambda: ids.append(int(timed("trellis", lambda: client.put(mine)))),
                 "pickle": lambda: timed("pickle", lambda: dump(theirs, i))})
else:
    ids = json.loads(sys.stdin.read())["ids"]
    for i in range(count):
        both(i, {"trellis": lambda: timed("trellis", lambda: get(ids[i])),
                 "pickle": lambda: timed("pickle", lambda: load(i))})
result = json.dumps({"ids": ids, **{v: statistics.median(t[count // 10:]) * 1e6
                                    for v, t in times.items()}})
if side.startswith("stream"):
    with open(sys.argv[7], "w") as out:  # stdout is the other side's pipe
        out.write(result)
else:
    print(result)
'''


def side(which, cols, kind, count, where, variants, stdin=None):
    out = subprocess.run([PY, "-c", SIDE, which, str(cols), kind, str(count), where,
                          ",".join(variants)],
                         input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout


def stream(cols, kind, count, where, variants):
    """The stream regime: a producer and a consumer process at once, the
    producer at most WINDOW frames ahead; the consumer deletes (unlinks)
    each frame once read. Returns the producer's and consumer's results."""
    with tempfile.TemporaryDirectory() as results:
        paths = [os.path.join(results, f"{which}.json") for which in ("p", "c")]
        args = [str(cols), kind, str(count), where, ",".join(variants)]
        producer = subprocess.Popen([PY, "-c", SIDE, "stream-produce", *args, paths[0]],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        consumer = subprocess.Popen([PY, "-c", SIDE, "stream-consume", *args, paths[1]],
                                    stdin=producer.stdout, stdout=producer.stdin)
        producer.stdout.close()
        producer.stdin.close()
        codes = (producer.wait(), consumer.wait())
        if codes != (0, 0):
            raise RuntimeError(f"stream sides exited with {codes}")
        return [json.loads(Path(path).read_text()) for path in paths]


def shmem_thp_policy():
    """The kernel's shmem THP policy in force (the [bracketed] word)."""
    return re.search(r"\[(\w+)\]", SHMEM_THP.read_text()).group(1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--md", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--busy-poll-us", default=0, type=lambda v: v if v == "auto" else int(v))
    p.add_argument("--huge-pages", choices=("auto", "off"), default="auto",
                   help="trellisd --huge-pages (default auto, as deployed)")
    p.add_argument("--shmem-thp", default=None,
                   help="the kernel's shmem THP policy for this run (root), e.g. advise")
    args = p.parse_args(argv)
    policy_before = None
    if args.shmem_thp:
        policy_before = shmem_thp_policy()
        SHMEM_THP.write_text(args.shmem_thp)
    try:
        return run(args)
    finally:
        if policy_before:
            SHMEM_THP.write_text(policy_before)


def run(args):
    import trellis
    from python_bench import emit_report, machine_info, machine_line
    work = tempfile.mkdtemp(prefix="trellis-sf-")
    shm = tempfile.mkdtemp(prefix="trellis-sf-", dir="/dev/shm")
    os.environ["TRELLIS_SOCKET"] = os.path.join(work, "d.sock")
    daemon = trellis.start_daemon(size="2G", detach=True, busy_poll_us=args.busy_poll_us,
                                  huge_pages=args.huge_pages == "auto")
    with trellis.connect(start=False) as c:
        huge_pages = c.status()["huge_pages"]
    policy = shmem_thp_policy() if SHMEM_THP.exists() else "none"
    # Three regimes, each round running every shape in each (a figure is
    # the median over rounds of a round's median):
    #   loop: each variant in processes of its own, call after call;
    #   interleaved: one producer and one consumer do both variants frame
    #     by frame (see SIDE), so there is other work between two calls to
    #     the daemon, as in a pipeline, and both meet the same moment of
    #     this shared VM; all frames are made before any is read, so every
    #     read meets memory its process has never touched;
    #   stream: as interleaved, but the producer and the consumer run at
    #     once, at most WINDOW frames apart, and the consumer frees each
    #     frame it has read: memory is reused, as in trellis.stream's jobs.
    modes = {"loop": [["trellis"], ["pickle"]], "interleaved": [["trellis", "pickle"]],
             "stream": [["trellis", "pickle"]]}
    keys = ("trellis_put_us", "trellis_get_us", "pickle_put_us", "pickle_get_us")
    samples = {(mode, cols, kind): {k: [] for k in keys}
               for mode in modes for cols, kind in SHAPES}
    rows = []
    try:
        for rnd in range(args.rounds):
            for mode, groups in modes.items():
                for cols, kind in SHAPES:
                    for variants in groups:
                        if mode == "stream":
                            made, read = stream(cols, kind, args.count, shm, variants)
                        else:
                            made = json.loads(side("produce", cols, kind, args.count, shm,
                                                   variants))
                            read = json.loads(side("consume", cols, kind, args.count, shm,
                                                   variants, stdin=json.dumps(made)))
                        for variant in variants:
                            samples[mode, cols, kind][f"{variant}_put_us"].append(made[variant])
                            samples[mode, cols, kind][f"{variant}_get_us"].append(read[variant])
                        with trellis.connect(start=False) as c:
                            for oid in made["ids"]:
                                c.delete(oid)
                        for name in os.listdir(shm):
                            os.unlink(os.path.join(shm, name))
            print(f"round {rnd + 1}/{args.rounds} done", flush=True)
        for (mode, cols, kind), got in samples.items():
            r = {"mode": mode, "columns": cols, "kind": kind, "rounds": got}
            for key, values in got.items():
                r[key] = statistics.median(values)
            r["trellis_us"] = r["trellis_put_us"] + r["trellis_get_us"]
            r["pickle_us"] = r["pickle_put_us"] + r["pickle_get_us"]
            rows.append(r)
            print(f"{mode:<11} {cols:>3} {kind:<5}: trellis {r['trellis_us']:7.1f} us "
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
             f"Daemon: --busy-poll-us {args.busy_poll_us}"
             f"{' (the default: it sleeps as soon as it is idle)' if args.busy_poll_us == 0 else ''}"
             f"{' (a window that follows the gaps between requests)' if args.busy_poll_us == 'auto' else ''}.",
             "",
             f"Arena pages (--huge-pages {args.huge_pages}): "
             f"{'2 MiB (transparent huge pages)' if huge_pages else '4 KiB'}"
             f"{' on a tmpfs of its own' if huge_pages and policy in ('never', 'none') else ''}; "
             f"the kernel's shmem THP policy was `{policy}`"
             f"{' for this run (--shmem-thp)' if args.shmem_thp else ' (as the machine had it)'}.",
             "",
             f"100-row frames, {args.count} per shape, mode and round, {args.rounds} rounds; "
             "per frame in microseconds, the median over rounds of each round's median (the "
             "first 10% left out as warm-up). Three regimes: *loop*, each variant in a "
             "producer and a consumer process of its own, call after call; *interleaved*, "
             "one producer puts and dumps each frame (its own copy for each) and then one "
             "consumer gets and loads it, the order alternating frame by frame: there is "
             "other work between two calls to the daemon, as in a pipeline, and both "
             "variants meet the same moment of the VM; *stream*, as interleaved but the "
             "two processes run at once, the producer at most 8 frames ahead, and the "
             "consumer deletes (unlinks) each frame once read, so memory is reused as in "
             "a trellis.stream job. In loop and interleaved every read meets memory its "
             "process has never touched.", ""]
    verdicts = []
    for mode in modes:
        lines += [f"**{mode}**", "",
                  "| columns | kind | trellis put | trellis get | trellis total | "
                  "pickle dump | pickle load | pickle total | trellis / pickle |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r["mode"] == mode):
            lines.append(f"| {r['columns']} | {r['kind']} | {r['trellis_put_us']:.1f} | "
                         f"{r['trellis_get_us']:.1f} | {r['trellis_us']:.1f} | "
                         f"{r['pickle_put_us']:.1f} | {r['pickle_get_us']:.1f} | "
                         f"{r['pickle_us']:.1f} | {r['trellis_us'] / r['pickle_us']:.2f} |")
        lines.append("")
        ahead = [f"{r['columns']} {r['kind']}" for r in rows
                 if r["mode"] == mode and r["trellis_us"] < r["pickle_us"]]
        verdicts.append(f"{mode}: cheaper for {len(ahead)} of {len(SHAPES)} shapes "
                        f"({', '.join(ahead) or 'none'})")
    met = all(r["trellis_us"] < r["pickle_us"] for r in rows)
    lines += [f"Target: trellis cheaper than pickle for every shape: "
              f"{'met' if met else 'NOT met'} ({'; '.join(verdicts)})."]
    emit_report(lines, args.md, args.json,
                {"machine": m, "busy_poll_us": args.busy_poll_us, "huge_pages": huge_pages,
                 "shmem_thp_policy": policy, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
