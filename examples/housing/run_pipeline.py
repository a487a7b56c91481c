#!/usr/bin/python3
"""Runs the housing pipeline once per exchange and compares them.

Generates the raw table once, then for each round and each exchange
(trellis, pickle-disk, pickle-shm) runs preprocess.py, train.py and test.py
as three separate processes on that same input, collects their reports,
cleans up what the exchange holds (unless --keep), and prints:

- per exchange and step: process wall time, the step's own total, and the
  seconds it spent writing and reading intermediate data (medians over
  rounds);
- per exchange: end-to-end time (sum of the three process wall times,
  interpreter start-up included), exchange time (all writes + reads), MSE;
- a check that every variant computed the same MSE, and the targets
  (trellis exchange time <= 1/10 of pickle-disk's, end-to-end >= 30% faster).

The trellis variant needs a daemon: by default the driver starts the SDK's
embedded one on a private socket, sized for the data (see daemon.py); its
start-up time is reported but is not exchange time. The driver stops it at
the end. Exit status: 0 if all ran and the MSEs agree, 1 otherwise.

Usage: run_pipeline.py --rows 2000000 [--rounds 3] [--json out.json]
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import daemon  # noqa: E402
import generate  # noqa: E402
from common import ALL_NAMES, EXCHANGES, parse_report  # noqa: E402
from exchange import default_exchange_dir, make_exchange  # noqa: E402
from flow import housing_flow  # noqa: E402

STEPS = ("preprocess", "train", "test")
STEP_PHASES = ("wall_s", "cpu_s", "total_s", "write_s", "read_s", "load_s",
               "compute_s", "imports_s", "max_rss_mib", "minor_faults")
#: Rows dropped by GrLivArea > 4800 (uniform on [600, 5000]): 200/4401.
KEPT_FRACTION = 1.0 - 200.0 / 4401.0
#: Intermediate bytes per kept row: 45 feature + 1 target int64 columns,
#: plus the int64 index carried by both the features and the target.
EXCHANGE_BYTES_PER_ROW = 8 * 46 + 8 * 2
MSE_RTOL = 1e-9
TARGET_EXCHANGE_RATIO = 0.10
TARGET_SPEEDUP = 0.30


# --- set-up -----------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-rounds", type=int, default=1,
                   help="untimed rounds of every exchange before the measured "
                        "ones (the first run on a machine pays for cold pages)")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat each exchange; tables show medians")
    p.add_argument("--exchanges", default=",".join(EXCHANGES),
                   help="comma-separated subset of " + ",".join(EXCHANGES))
    p.add_argument("--workdir", default=None,
                   help="raw input, pickle-disk files and outputs "
                        "(default: a fresh directory under /tmp)")
    p.add_argument("--input", default=None,
                   help="reuse this raw table instead of generating one")
    p.add_argument("--daemon", choices=("embedded", "trellisd", "external"),
                   default="embedded", help="how to get a trellis daemon")
    p.add_argument("--trellisd", default=os.path.join(REPO, "build", "bin", "trellisd"),
                   help="trellisd binary for --daemon trellisd")
    p.add_argument("--size", type=int, default=None,
                   help="arena bytes (default: sized from --rows)")
    p.add_argument("--no-reserve", action="store_true",
                   help="do not pre-fault the arena of a daemon the driver starts")
    p.add_argument("--drop-caches", action="store_true",
                   help="sync and drop the page cache before every step "
                        "(root only), so pickle-disk reads hit the disk")
    p.add_argument("--keep", action="store_true",
                   help="leave intermediate objects/files in place")
    p.add_argument("--profile", action="store_true",
                   help="write cProfile stats of every step to the workdir")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the results as JSON to PATH")
    p.add_argument("--md", default=None, metavar="PATH",
                   help="write the tables as Markdown to PATH")
    args = p.parse_args(argv)
    args.exchanges = [e.strip() for e in args.exchanges.split(",") if e.strip()]
    for e in args.exchanges:
        if e not in EXCHANGES:
            p.error(f"unknown exchange {e!r}")
    if args.keep and args.rounds > 1:
        p.error("--keep keeps one run's objects; use it with --rounds 1")
    if args.drop_caches and os.geteuid() != 0:
        p.error("--drop-caches needs root")
    return args


def arena_size_for(rows):
    """Arena bytes that hold one run's intermediate data with headroom."""
    data = rows * KEPT_FRACTION * EXCHANGE_BYTES_PER_ROW
    size = int(data * 1.25) + (256 << 20)
    return (size + (1 << 20) - 1) >> 20 << 20


def machine_info():
    """What the results were measured on."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    import numpy, pandas, sklearn  # noqa: E401
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "mem_total_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "sklearn": sklearn.__version__,
        "git_commit": _git_commit(),
    }


def _git_commit():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or None
    except OSError:
        return None


def filesystem_of(path):
    """File system type holding `path` (e.g. ext4, tmpfs), via stat -f."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    out = subprocess.run(["stat", "-f", "-c", "%T", path],
                         capture_output=True, text=True).stdout.strip()
    return out or None


def load_average():
    return list(os.getloadavg())


def prepare_input(args, workdir):
    """Returns (path, info) of the raw table, generating it if needed."""
    if args.input:
        return args.input, {"path": args.input, "generated": False,
                            "bytes": os.path.getsize(args.input)}
    path = os.path.join(workdir, f"housing_{args.rows}_{args.seed}.pkl")
    t0 = time.perf_counter()
    generate.write_table(generate.generate(args.rows, args.seed), path)
    return path, {"path": path, "generated": True,
                  "generate_s": time.perf_counter() - t0,
                  "bytes": os.path.getsize(path)}


def start_daemon(args, workdir):
    """Returns a daemon.Daemon for the trellis variant."""
    size = args.size or arena_size_for(args.rows)
    if args.daemon == "external":
        socket = os.environ.get("TRELLIS_SOCKET")
        if not socket:
            raise SystemExit("--daemon external needs TRELLIS_SOCKET")
        return daemon.use_external(socket)
    socket = os.path.join(workdir, "trellis.sock")
    os.environ["TRELLIS_SOCKET"] = socket  # inherited by the steps
    if args.daemon == "trellisd":
        return daemon.start_trellisd(args.trellisd, socket, size,
                                     reserve=not args.no_reserve)
    return daemon.start_embedded(socket, size, reserve=not args.no_reserve)


# --- one pipeline run -----------------------------------------------------------

def exchange_dir_for(exchange, workdir):
    if exchange == "pickle-disk":
        return os.path.join(workdir, "exchange")
    if exchange == "pickle-shm":
        return default_exchange_dir("pickle-shm") + "-" + os.path.basename(workdir)
    return None


def run_pipeline(exchange, raw_path, workdir, args, round_no):
    """Runs the housing flow (preprocess -> train -> test) for `exchange`
    with the local executor; returns a run record."""
    exchange_dir = exchange_dir_for(exchange, workdir)
    output = os.path.join(workdir, f"output_{exchange}.txt")
    profile = (os.path.join(workdir, f"{exchange}_{round_no}_")
               if args.profile else None)
    flow = housing_flow(exchange, raw_path=raw_path, output=output,
                        exchange_dir=exchange_dir, profile_prefix=profile,
                        drop_caches=args.drop_caches)
    run_id = f"housing-{exchange}-{os.getpid()}-{round_no}"
    # The pickle variants hand nothing over through a store, but the local
    # executor runs every flow next to a daemon: give them a small one of
    # their own (started on first use, ended with this driver) so that the
    # trellis variant's daemon lives only for its runs.
    socket = (os.environ["TRELLIS_SOCKET"] if exchange == "trellis" else
              os.path.join(workdir, "flow-only.sock"))
    flow_run = flow.run(run_id=run_id, keep=args.keep, socket=socket,
                        size=None if exchange == "trellis" else "64M")
    state = flow_run.wait(check=False)
    if state != "succeeded":
        for step in STEPS:
            sys.stdout.write(flow_run.logs(step)["stdout"])
        raise RuntimeError(flow_run.failure())
    status = flow_run.status()
    run = {"exchange": exchange, "round": round_no, "steps": {},
           "drop_caches_s": sum(s["wall_s"] for name, s in status.items()
                                if name.startswith("drop-caches-")),
           "flow_run": run_id, "placement": flow_run.placement()}
    for step in STEPS:
        report = parse_report(flow_run.logs(step)["stdout"])
        report["wall_s"] = status[step]["wall_s"]
        # The step's own CPU seconds (its whole process life), less
        # disturbed than wall time by other work on a shared machine.
        run["steps"][step] = report
    steps = run["steps"]
    run["end_to_end_s"] = sum(steps[s]["wall_s"] for s in STEPS)
    run["end_to_end_cpu_s"] = _run_total(run, "cpu_s")
    run["exchange_s"] = _run_total(run, "write_s") + _run_total(run, "read_s")
    run["mse"] = steps["test"]["mse"]
    with open(output) as f:  # the test step's own output, last line
        run["mse_in_output"] = float(f.read().split()[-1])
    run["cleanup"] = cleanup(exchange, exchange_dir, args.keep, flow_run)
    if not args.keep:
        shutil.rmtree(flow_run.dir, ignore_errors=True)  # the run's logs
    return run


def cleanup(exchange, exchange_dir, keep, flow_run):
    """Removes what `exchange` holds after a run; returns what it found.

    trellis: the flow deleted its intermediate objects when the run
    succeeded; checks that no name is left behind. pickle: removes the
    files (the flow does not know them).
    """
    if keep:
        return {"kept": True}
    if exchange == "trellis":
        import trellis
        record = flow_run.record()["cleanup"]
        with trellis.connect(start=False) as client:
            return {"kept": False, "removed": len(record["deleted"]),
                    "names_left": sorted(n for name in ALL_NAMES
                                         for n in client.list_names(name)),
                    "store_status": client.status()}
    t0 = time.perf_counter()
    removed = make_exchange(exchange, exchange_dir).remove(ALL_NAMES)
    return {"kept": False, "removed": removed,
            "cleanup_s": time.perf_counter() - t0}


def run_with_store(exchange, raw_path, workdir, args, round_no):
    """run_pipeline(), with a trellis daemon around it for the trellis variant.

    The daemon lives for one run only, so that its arena does not hold memory
    while the other variants run (it matters at tens of millions of rows).
    With --keep it is left running, so the kept objects stay readable.
    """
    if exchange != "trellis":
        return run_pipeline(exchange, raw_path, workdir, args, round_no)
    d = start_daemon(args, workdir)
    try:
        run = run_pipeline(exchange, raw_path, workdir, args, round_no)
        run["daemon"] = d.describe()
        return run
    finally:
        if not args.keep:
            d.stop()
        elif d.mode != "external":
            print(f"  kept: trellis daemon still serves {d.socket}; stop it with "
                  f"trellis.stop_daemon({d.socket!r})", flush=True)


# --- summary and tables ---------------------------------------------------------

def _run_total(run, phase):
    """Seconds `run` spent in `phase` over its three steps."""
    return sum(run["steps"][s][phase] for s in STEPS)


def summarize(runs, exchanges):
    """Per exchange: the median of every step phase, and the median over
    runs of each per-run total (so end-to-end, exchange, write, read, ...
    are each one run's figure, not sums of medians from different runs)."""
    summary = {}
    for ex in exchanges:
        mine = [r for r in runs if r["exchange"] == ex]
        if not mine:
            continue
        steps = {step: {k: statistics.median(r["steps"][step].get(k, 0.0) for r in mine)
                        for k in STEP_PHASES}
                 for step in STEPS}
        summary[ex] = {
            "rounds": len(mine),
            "steps": steps,
            "end_to_end_s": statistics.median(r["end_to_end_s"] for r in mine),
            "end_to_end_cpu_s": statistics.median(r["end_to_end_cpu_s"] for r in mine),
            "exchange_s": statistics.median(r["exchange_s"] for r in mine),
            "mse": mine[0]["mse"],
        }
        for phase in ("write_s", "read_s", "compute_s", "load_s", "imports_s"):
            summary[ex][phase] = statistics.median(_run_total(r, phase) for r in mine)
        if "daemon" in mine[0]:
            summary[ex]["daemon"] = dict(mine[0]["daemon"], startup_s=statistics.median(
                r["daemon"]["startup_s"] for r in mine))
    return summary


def check(runs, summary):
    """MSE agreement across all runs, and the targets against pickle-disk."""
    mses = [r["mse"] for r in runs] + [r["mse_in_output"] for r in runs]
    ref = mses[0]
    max_rel = max(abs(m - ref) / abs(ref) for m in mses) if ref else 0.0
    checks = {"mse_identical": all(m == ref for m in mses),
              "mse_max_rel_diff": max_rel,
              "mse_agree": max_rel <= MSE_RTOL}
    if "trellis" in summary and "pickle-disk" in summary:
        t, d = summary["trellis"], summary["pickle-disk"]
        ratio = t["exchange_s"] / d["exchange_s"] if d["exchange_s"] else None
        speedup = 1.0 - t["end_to_end_s"] / d["end_to_end_s"]
        checks["exchange_ratio_vs_pickle_disk"] = ratio
        checks["end_to_end_faster_than_pickle_disk"] = speedup
        checks["target_exchange_met"] = ratio is not None and ratio <= TARGET_EXCHANGE_RATIO
        checks["target_end_to_end_met"] = speedup >= TARGET_SPEEDUP
    return checks


def format_tables(results):
    """The results as Markdown tables (what the driver prints)."""
    summary, cfg = results["summary"], results["config"]
    lines = what_ran(results) + [f"housing pipeline: {cfg['rows']:,} rows "
             f"({results['input']['bytes'] / 1e9:.2f} GB raw pickle), "
             f"{cfg['rounds']} round(s), medians in seconds"
             + (", page cache dropped before every step" if cfg["drop_caches"]
                else ", page cache warm (not dropped)"),
             "",
             "| exchange | step | wall | CPU | step total | write | read | load raw | compute | imports | peak RSS MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ex, s in summary.items():
        for step in STEPS:
            p = s["steps"][step]
            lines.append(f"| {ex} | {step} | {p['wall_s']:.2f} | {p['cpu_s']:.2f} | {p['total_s']:.2f} | "
                         f"{p['write_s']:.3f} | {p['read_s']:.3f} | {p['load_s']:.2f} | "
                         f"{p['compute_s']:.2f} | {p['imports_s']:.2f} | {p['max_rss_mib']:.0f} |")
    lines += ["",
              "| exchange | end-to-end | end-to-end CPU | exchange (write+read) | write | read | "
              "compute | end-to-end saved vs pickle-disk | CPU saved | exchange time / pickle-disk's | MSE |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = summary.get("pickle-disk")
    for ex, s in summary.items():
        rel_e2e = rel_cpu = rel_ex = "—"
        if base:
            rel_e2e = f"{(1 - s['end_to_end_s'] / base['end_to_end_s']) * 100:+.0f}%"
            rel_cpu = f"{(1 - s['end_to_end_cpu_s'] / base['end_to_end_cpu_s']) * 100:+.0f}%"
            if base["exchange_s"] > 0:
                rel_ex = f"{s['exchange_s'] / base['exchange_s']:.3f}"
        lines.append(f"| {ex} | {s['end_to_end_s']:.2f} | {s['end_to_end_cpu_s']:.2f} | "
                     f"{s['exchange_s']:.3f} | {s['write_s']:.3f} | {s['read_s']:.3f} | "
                     f"{s['compute_s']:.2f} | {rel_e2e} | {rel_cpu} | {rel_ex} | {s['mse']:.6f} |")
    c, d = results["checks"], summary.get("trellis", {}).get("daemon")
    lines.append("")
    if d:
        lines.append(f"- trellis daemon: {d['mode']}, arena {d['size'] or 0:,} bytes"
                     f"{' (pre-faulted)' if d['reserve'] else ''}, "
                     f"start-up {d['startup_s']:.2f} s (not counted above)")
    lines.append("- MSE " + ("identical across all runs" if c["mse_identical"] else
                           f"agrees to {c['mse_max_rel_diff']:.1e} relative"
                           if c["mse_agree"] else
                           f"DIFFERS (max relative difference {c['mse_max_rel_diff']:.1e})"))
    if "exchange_ratio_vs_pickle_disk" in c:
        saved = c["end_to_end_faster_than_pickle_disk"]
        lines.append(
            f"- targets: trellis exchange time = {c['exchange_ratio_vs_pickle_disk']:.3f}"
            f" of pickle-disk's (target <= {TARGET_EXCHANGE_RATIO}: "
            f"{'met' if c['target_exchange_met'] else 'NOT met'}); end-to-end "
            f"{abs(saved) * 100:.0f}% {'less' if saved >= 0 else 'more'} time (target: >= "
            f"{TARGET_SPEEDUP * 100:.0f}% less: {'met' if c['target_end_to_end_met'] else 'NOT met'})")
    lines += ["", meaning(summary)]
    return "\n".join(lines) + "\n"


def what_ran(results):
    """Lines saying what ran where, before the numbers."""
    cfg = results["config"]
    first = results["runs"][0]
    hosts = sorted({(p["node"], p["hostname"]) for p in first["placement"]})
    where = ", ".join(f"node {n} ({h})" for n, h in hosts)
    return [f"What ran: the housing flow (preprocess -> train -> test, each "
            f"step its own process) with the local executor, on {where}, "
            f"once per exchange ({', '.join(cfg['exchanges'])}) in each round.",
            f"Warm-up: {cfg['warmup_rounds']} untimed round(s) of every exchange "
            f"first; the measured rounds then rotate which exchange goes first.",
            ""]


def meaning(summary):
    """One line on what the table says."""
    t, d = summary.get("trellis"), summary.get("pickle-disk")
    if not t or not d:
        return "Meaning: compare trellis with pickle-disk to see the saving."
    ratio = d["exchange_s"] / t["exchange_s"] if t["exchange_s"] else float("inf")
    saved = 1 - t["end_to_end_s"] / d["end_to_end_s"]
    return (f"Meaning: handing the intermediate data over took {t['exchange_s']:.2f} s "
            f"through trellis against {d['exchange_s']:.2f} s through pickle files "
            f"on disk ({ratio:.0f}x less), so the whole pipeline took "
            f"{abs(saved) * 100:.0f}% {'less' if saved >= 0 else 'more'} time.")


def format_markdown(results):
    """A self-contained Markdown report: command, machine, conditions, tables."""
    m, cfg = results["machine"], results["config"]
    before = ", ".join(f"{x:.2f}" for x in results["load_average_before"])
    after = ", ".join(f"{x:.2f}" for x in results.get("load_average_after", []))
    head = [f"# Housing pipeline, {cfg['rows']:,} rows",
            "",
            f"Command: `{cfg['command']}`",
            "",
            f"Machine: {m['cpu_model']}, {m['nproc']} CPUs, {m['mem_total_gib']} GiB, "
            f"Linux {m['kernel']}; Python {m['python']}, numpy {m['numpy']}, "
            f"pandas {m['pandas']}, scikit-learn {m['sklearn']}; "
            f"trellis {m['git_commit']}; {m['date']}.",
            f"Load average (1/5/15 min) before: {before}; after: {after}.",
            ""]
    return "\n".join(head) + "\n" + format_tables(results)


# --- main -------------------------------------------------------------------------

def run(args):
    """Runs everything `args` asks for; returns the results dict."""
    own_workdir = args.workdir is None
    workdir = args.workdir or tempfile.mkdtemp(prefix="trellis-housing-")
    os.makedirs(workdir, exist_ok=True)
    results = {"config": {"command": " ".join(sys.argv),
                          "rows": args.rows, "seed": args.seed,
                          "rounds": args.rounds, "exchanges": args.exchanges,
                          "warmup_rounds": args.warmup_rounds,
                          "drop_caches": args.drop_caches, "keep": args.keep,
                          "workdir": workdir,
                          "exchange_dirs": {e: exchange_dir_for(e, workdir)
                                            for e in args.exchanges},
                          "exchange_fs": {e: filesystem_of(exchange_dir_for(e, workdir))
                                          for e in args.exchanges
                                          if exchange_dir_for(e, workdir)}},
               "machine": machine_info(),
               "load_average_before": load_average()}
    try:
        raw_path, results["input"] = prepare_input(args, workdir)
        for warm in range(args.warmup_rounds):
            # Not measured: the first pipeline a machine runs pays for cold
            # memory (1.24 s instead of 0.34 s to load the raw table at 2 M
            # rows in a fresh-clone `make demo`), whichever variant it is.
            print(f"[warm-up {warm + 1}/{args.warmup_rounds}, not measured] "
                  f"{', '.join(args.exchanges)} ...", flush=True)
            for ex in args.exchanges:  # --keep keeps the measured run only
                run_with_store(ex, raw_path, workdir,
                               argparse.Namespace(**dict(vars(args), keep=False)),
                               -1 - warm)
        runs = []
        for round_no in range(args.rounds):
            # Rotate which exchange runs first: the first run of a round
            # meets a machine in a different state (a daemon just started and
            # pre-faulted its arena, the raw table's page cache) than the rest.
            shift = round_no % len(args.exchanges)
            for ex in args.exchanges[shift:] + args.exchanges[:shift]:
                print(f"[round {round_no + 1}/{args.rounds}] {ex} ...", flush=True)
                runs.append(run_with_store(ex, raw_path, workdir, args, round_no))
                print(f"  end-to-end {runs[-1]['end_to_end_s']:.2f} s, "
                      f"exchange {runs[-1]['exchange_s']:.3f} s", flush=True)
        results["runs"] = runs
        results["summary"] = summarize(runs, args.exchanges)
        results["checks"] = check(runs, results["summary"])
        results["load_average_after"] = load_average()
    finally:
        if own_workdir and not args.keep and not args.profile:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv=None):
    args = parse_args(argv)
    results = run(args)
    tables = format_tables(results)
    print()
    print(tables, end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    if args.md:
        with open(args.md, "w") as f:
            f.write(format_markdown(results))
    return 0 if results["checks"]["mse_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
