#!/usr/bin/python3
"""What a flow costs per step, against running the same script by hand.

A tiny script step whose first line prints time.time() runs
  - by hand: subprocess.run([python3, script]) one after another, and
  - as a chain of --steps steps of a flow (local executor, a daemon
    already running),
for --rounds rounds each, alternating. Reported (medians over rounds):
  - start to first line: from the call (subprocess.Popen / flow.run) to the
    step's first line, for the first step;
  - per step: (flow's wall time for the chain - the by-hand chain's) /
    steps, i.e. what the flow adds to each step (placement, the daemon
    queries before and after, the run record, scheduling);
and the same for a shell step (`/bin/sh -c 'date +%s.%N'`) and a callable
step (which imports trellis and cloudpickle in its process, against a
by-hand `python3 -c 'import trellis'`). Target: per-step overhead of a
script step <= 50 ms. Writes Markdown (and JSON) with the machine.

Usage: flow_bench.py [--steps 10] [--rounds 5] [--md out.md] [--json out.json]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]

import trellis  # noqa: E402
from trellis.flow import Flow, Step  # noqa: E402
from python_bench import emit_report, machine_info, machine_line  # noqa: E402

PY = "/usr/bin/python3"
FIRST_LINE = "import time; print(repr(time.time()), flush=True)\n"
TARGET_MS = 50.0


def noop():
    return None


def kinds(script):
    """(name, step factory, by-hand argv) per step kind."""
    return [
        ("script", lambda i: Step(f"s{i}", script=script), [PY, script]),
        ("shell", lambda i: Step(f"s{i}", command="date +%s.%N"),
         ["/bin/sh", "-c", "date +%s.%N"]),
        ("callable", lambda i: Step(f"s{i}", noop),
         [PY, "-c", "import trellis, cloudpickle"]),
    ]


def by_hand(argv, steps):
    """(first-line latency of the first, wall of the chain) by hand."""
    t0 = time.time()
    first = None
    for _ in range(steps):
        out = subprocess.run(argv, capture_output=True, text=True, check=True)
        if first is None and out.stdout.strip():
            first = float(out.stdout.split()[0]) - t0
    return first, time.time() - t0


def with_flow(make, steps, round_no, kind):
    flow = Flow(f"bench-{kind}")
    for i in range(steps):
        flow.process(make(i))
    t0 = time.time()
    run = flow.run(run_id=f"bench-{kind}-{os.getpid()}-{round_no}")
    run.wait()
    wall = time.time() - t0
    out = run.logs("s0")["stdout"].strip()
    first = float(out.split()[0]) - t0 if out else None
    return first, wall


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--md", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="trellis-flow-bench-")
    os.environ["TRELLIS_FLOW_DIR"] = os.path.join(work, "runs")
    os.environ["TRELLIS_SOCKET"] = os.path.join(work, "d.sock")
    script = os.path.join(work, "first_line.py")
    with open(script, "w") as f:
        f.write(FIRST_LINE)
    keep_alive = trellis.connect(size="256M")  # the daemon runs throughout
    results = {}
    for kind, make, hand_argv in kinds(script):
        by_hand(hand_argv, 2)  # warm-up, not measured
        with_flow(make, 2, -1, kind)
        rows = {"hand_first": [], "hand_wall": [], "flow_first": [], "flow_wall": []}
        for r in range(args.rounds):
            hf, hw = by_hand(hand_argv, args.steps)
            ff, fw = with_flow(make, args.steps, r, kind)
            rows["hand_first"].append(hf)
            rows["hand_wall"].append(hw)
            rows["flow_first"].append(ff)
            rows["flow_wall"].append(fw)
        med = {k: statistics.median(v) for k, v in rows.items() if None not in v}
        med["per_step_overhead_ms"] = (med["flow_wall"] - med["hand_wall"]) / args.steps * 1e3
        med["raw"] = rows
        results[kind] = med
        print(f"{kind:<8}: by hand {med['hand_wall'] / args.steps * 1e3:.1f} ms/step, "
              f"flow {med['flow_wall'] / args.steps * 1e3:.1f} ms/step, "
              f"overhead {med['per_step_overhead_ms']:.1f} ms/step", flush=True)
    keep_alive.close()
    m = machine_info()
    lines = [f"# Flow overhead per step (local executor, chain of {args.steps} steps, "
             f"{args.rounds} rounds, medians)", "",
             f"Command: `{' '.join(sys.argv)}`", "",
             machine_line(m), "",
             "| step kind | by hand: start to first line ms | flow: start to first line ms "
             "| by hand ms/step | flow ms/step | flow overhead ms/step |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind, r in results.items():
        hand_first = f"{r['hand_first'] * 1e3:.1f}" if "hand_first" in r else "—"
        flow_first = f"{r['flow_first'] * 1e3:.1f}" if "flow_first" in r else "—"
        lines.append(f"| {kind} | {hand_first} | {flow_first} | "
                     f"{r['hand_wall'] / args.steps * 1e3:.1f} | "
                     f"{r['flow_wall'] / args.steps * 1e3:.1f} | "
                     f"{r['per_step_overhead_ms']:.1f} |")
    ok = results["script"]["per_step_overhead_ms"] <= TARGET_MS
    lines += ["", f"Target: script-step overhead <= {TARGET_MS:.0f} ms/step: "
              f"{'met' if ok else 'NOT met'} "
              f"({results['script']['per_step_overhead_ms']:.1f} ms)."]
    emit_report(lines, args.md, args.json, {"machine": m, "config": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
