#!/usr/bin/python3
"""The seed's parallel pandas job: serial vs trellis.stream on 1 and 2
workers vs multiprocessing.Pool on 2 workers, in one run.

For each input size, every variant runs as its own process on the same
generated CSV (rounds rotate the order; medians reported), and every output
is compared byte for byte with the serial one. The trellis variants report
their stats (--stats), from which the runner's overhead per batch is read:
the coordinator's own time (reading the source, puts, dispatch, writing
the sink, deletes) plus the workers' store calls (get + put), against the
classifier's own time per batch. Targets (issue 11): >= 1.8x over serial on
2 workers, ahead of Pool, overhead per batch <= 5% of the classifier's.

Usage: parallel_pandas_bench.py [--rows 10000,100000] [--rounds 3]
                                [--md out.md] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "parallel_pandas"
sys.path[:0] = [str(ROOT / "bench"), str(EXAMPLE)]

import trellis  # noqa: E402
from python_bench import emit_report, machine_info, machine_line  # noqa: E402
import generate  # noqa: E402

PY = "/usr/bin/python3"
VARIANTS = ("serial", "trellis-1", "trellis-2", "pool-2")
#: Beyond this spread of the speed probe (slowest / fastest) a run is too
#: noisy to judge the targets: the VM's speed changed under the variants.
MAX_PROBE_SPREAD = 1.10


def probe():
    """Seconds a fixed CPU-bound loop (the classifier's kind of work, one
    core, ~0.1 s; the best of three, so a moment's preemption does not
    count) takes now: run before every variant, so that a report shows how
    much this shared VM's speed moved during the run."""
    import hashlib
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        digest = b"probe"
        for _ in range(300_000):
            digest = hashlib.sha256(digest).digest()
        best = min(best, time.perf_counter() - t0)
    return best


#: Rows of the input the classifier scaling check classifies (~2 s of CPU).
SCALING_ROWS = 2000


def classifier_scaling(src, rows=SCALING_ROWS):
    """How far this VM lets two processes of the classifier's work go at
    once, now: the wall of classify_df over the first `rows` rows of `src`
    (100-row frames, read as the serial job reads them) in one forked
    process, over the wall of two forked processes taking every other frame
    at the same time. No 2-worker job, which has this work and more, can
    beat it; measured in every round, next to the variants."""
    import pandas as pd
    from classifier import classify_df
    frames = list(pd.read_csv(src, index_col=0, dtype=str, engine="python",
                              nrows=rows, chunksize=100))

    def wall(parts):
        t0 = time.perf_counter()
        pids = []
        for part in parts:
            pid = os.fork()
            if pid == 0:  # the child classifies its share and leaves at once
                for frame in part:
                    classify_df(frame.copy())
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        return time.perf_counter() - t0
    return wall([frames]) / wall([frames[0::2], frames[1::2]])


def command(variant, src, out):
    if variant == "serial":
        return [PY, str(EXAMPLE / "old_pipeline.py"), src, out]
    if variant.startswith("pool-"):
        return [PY, str(EXAMPLE / "pool_pipeline.py"), src, out,
                "--workers", variant.split("-")[1]]
    return [PY, str(EXAMPLE / "parallel_job.py"), "--input", src, "--output", out,
            "--workers", variant.split("-")[1], "--stats"]


def cpu_seconds(pid):
    """User + system CPU seconds process `pid` has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_variant(variant, src, work, daemon_pid):
    out = os.path.join(work, f"{variant}.csv")
    daemon_cpu = cpu_seconds(daemon_pid)
    t0 = time.perf_counter()
    proc = subprocess.run(command(variant, src, out), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr}")
    stats = None
    if variant.startswith("trellis"):
        stats = json.loads(proc.stderr.strip().splitlines()[-1])
        stats["daemon_cpu_s"] = cpu_seconds(daemon_pid) - daemon_cpu
    return wall, out, stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="10000,100000")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--md", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="trellis-ppb-")
    os.environ["TRELLIS_SOCKET"] = os.path.join(work, "trellis.sock")
    daemon = trellis.start_daemon(size="512M", detach=True)
    results = {}
    try:
        for rows in [int(r) for r in args.rows.split(",")]:
            src = os.path.join(work, f"input-{rows}.csv")
            generate.write(src, rows)
            run_variant("trellis-2", src, work, daemon.pid)  # warm-up (page cache, imports)
            walls = {v: [] for v in VARIANTS}
            stats = {v: [] for v in VARIANTS if v.startswith("trellis")}
            identical = True
            probes = []
            scalings = []
            for r in range(args.rounds):
                order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
                outputs = {}
                scalings.append(classifier_scaling(src))
                print(f"{rows:>7} rows, round {r + 1}: the classifier alone scales "
                      f"{scalings[-1]:.2f}x on 2 processes", flush=True)
                for v in order:
                    probes.append(probe())
                    wall, out, st = run_variant(v, src, work, daemon.pid)
                    walls[v].append(wall)
                    outputs[v] = Path(out).read_bytes()
                    if st:
                        stats[v].append(st)
                    print(f"{rows:>7} rows, round {r + 1}: {v:<10} {wall:7.2f} s", flush=True)
                identical &= all(o == outputs["serial"] for o in outputs.values())
            med = {v: statistics.median(w) for v, w in walls.items()}
            overhead = {}
            for v, sts in stats.items():
                # CPU seconds: on 2 cores shared by 2 workers, the coordinator
                # and the daemon, wall time would count waiting for a core.
                per = [((s["coordinator_cpu_s"] + s["store_cpu_s"]) / s["batches"],
                        s["fn_s"] / s["batches"]) for s in sts]
                o = statistics.median(a for a, _ in per)
                f = statistics.median(b for _, b in per)
                overhead[v] = {"overhead_ms_per_batch": o * 1e3,
                               "classifier_ms_per_batch": f * 1e3,
                               "overhead_fraction": o / f if f else None,
                               "coordinator_s": statistics.median(s["coordinator_s"] for s in sts),
                               "store_s": statistics.median(s["store_s"] for s in sts),
                               "parse_s": statistics.median(s["parse_s"] for s in sts),
                               "encode_s": statistics.median(s["encode_s"] for s in sts),
                               "daemon_ms_per_batch": statistics.median(
                                   s["daemon_cpu_s"] / s["batches"] for s in sts) * 1e3}
            results[rows] = {"walls": walls, "median": med, "identical": identical,
                             "overhead": overhead, "raw_stats": stats, "probes_s": probes,
                             "probe_spread": max(probes) / min(probes),
                             "classifier_scaling": scalings}
    finally:
        daemon.stop()
    m = machine_info()
    lines = [f"# Parallel pandas (the seed's classify_df job), {args.rounds} rounds, medians",
             "", f"Command: `{' '.join(sys.argv)}`", "",
             machine_line(m) + " Classifier: "
             f"{os.environ.get('CLASSIFIER_WORK', 'default')} work (about 1 ms of CPU per row).",
             "", "| rows | variant | wall s | speed-up vs serial | efficiency | output |",
             "|---:|---|---:|---:|---:|---|"]
    for rows, r in results.items():
        base = r["median"]["serial"]
        for v in VARIANTS:
            n = 1 if v == "serial" else int(v.split("-")[1])
            s = base / r["median"][v]
            lines.append(f"| {rows:,} | {v} | {r['median'][v]:.2f} | {s:.2f}x | "
                         f"{s / n * 100:.0f}% | "
                         f"{'identical' if r['identical'] else 'DIFFERENT'} |")
    lines += ["", "Runner overhead per batch: the CPU time of the coordinator's loop "
              "(reading the source, puts, dispatch, writing the sink, deletes) plus the "
              "workers' store calls (get + put), against the classifier's own time per "
              "batch. read_csv/to_csv are the job's own work (the serial job does them "
              "too) and are shown apart, and so is the daemon's CPU time per batch:", "",
              "| rows | variant | overhead ms/batch | classifier ms/batch | fraction | "
              "read_csv s (total) | to_csv s (total) | daemon ms/batch |",
              "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for rows, r in results.items():
        for v, o in r["overhead"].items():
            lines.append(f"| {rows:,} | {v} | {o['overhead_ms_per_batch']:.2f} | "
                         f"{o['classifier_ms_per_batch']:.1f} | "
                         f"{o['overhead_fraction'] * 100:.1f}% | {o['parse_s']:.2f} | "
                         f"{o['encode_s']:.2f} | {o['daemon_ms_per_batch']:.2f} |")
    lines.append("")
    lines += ["Speed probe (a fixed sha256 loop on one core, run before every variant; "
              "slowest / fastest): " + ", ".join(
                  f"{rows:,} rows {r['probe_spread']:.2f}" for rows, r in results.items())
              + f". Beyond {MAX_PROBE_SPREAD:.2f} the VM's speed moved too much during the "
              "run for its walls to be compared.", ""]
    lines += ["The classifier alone on 2 processes at once (no store, no I/O: "
              f"classify_df over the first {SCALING_ROWS:,} rows, every other 100-row frame "
              "each, against one process doing all; once per round): " + ", ".join(
                  f"{rows:,} rows {statistics.median(r['classifier_scaling']):.2f}x "
                  f"(rounds {', '.join(f'{x:.2f}' for x in r['classifier_scaling'])})"
                  for rows, r in results.items())
              + ". That is the most any 2-worker job can get on this VM during the run; "
              "the speed-ups below are also shown as a share of it.", ""]
    for rows, r in results.items():
        med = r["median"]
        speed = med["serial"] / med["trellis-2"]
        ceiling = statistics.median(r["classifier_scaling"])
        if r["probe_spread"] > MAX_PROBE_SPREAD:
            lines.append(f"- {rows:,} rows: NOT judged (the speed probe varied by "
                         f"{(r['probe_spread'] - 1) * 100:.0f}%); medians would give 2 "
                         f"workers {speed:.2f}x over serial ({speed / ceiling * 100:.0f}% of "
                         f"the classifier's own {ceiling:.2f}x), {med['trellis-2']:.2f} s vs "
                         f"Pool {med['pool-2']:.2f} s.")
            continue
        lines.append(f"- {rows:,} rows: 2 workers {speed:.2f}x over serial (target >= 1.8x: "
                     f"{'met' if speed >= 1.8 else 'NOT met'}; {speed / ceiling * 100:.0f}% "
                     f"of the classifier's own {ceiling:.2f}x); "
                     f"{'ahead of' if med['trellis-2'] < med['pool-2'] else 'BEHIND'} "
                     f"multiprocessing.Pool ({med['trellis-2']:.2f} s vs {med['pool-2']:.2f} s); "
                     f"overhead {r['overhead']['trellis-2']['overhead_fraction'] * 100:.1f}% "
                     f"of the classifier per batch (target <= 5%: "
                     f"{'met' if r['overhead']['trellis-2']['overhead_fraction'] <= 0.05 else 'NOT met'}).")
    emit_report(lines, args.md, args.json, {"machine": m, "config": vars(args), "results": results})
    return 0 if all(r["identical"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
