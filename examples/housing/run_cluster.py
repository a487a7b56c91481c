#!/usr/bin/python3
"""The housing flow on a two-node cluster with the dask executor, data
affinity on and off.

Brings up two test hosts on this machine (network namespaces, one trellisd
each, metadata in a real etcd; python/tests/cluster_fixture.py), a real
dask.distributed scheduler and one worker per node. The raw table is
generated and put on node 2 (as if exported there), then the same housing
flow (preprocess -> train -> test, reading the raw table by name with
fetch=True) runs with affinity on (each step on the node holding most of
its input bytes) and off (steps dealt round-robin over the nodes, as a
data-blind scheduler would). Prints what ran where, the bytes each step
fetched from the other node and the end-to-end time, and one line on what
it means. Each round uses a fresh cluster, so no run finds copies an
earlier one fetched.

Usage: run_cluster.py [--rows 2000000] [--rounds 1] [--json out.json] [--md out.md]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(REPO, "python", "tests")]

import trellis  # noqa: E402
from cluster_fixture import Cluster  # noqa: E402

import generate  # noqa: E402
from flow import housing_flow  # noqa: E402
from run_pipeline import arena_size_for, machine_info  # noqa: E402

RAW_NAME = "housing-raw"
DATA_NODE = 2  # where the raw table is put
MiB = 1 << 20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1,
                   help="fresh clusters, each running affinity on and off")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--md", default=None, metavar="PATH",
                   help="write the report as Markdown, with the machine")
    return p.parse_args(argv)


def start_node(cluster, k, size_mib, token):
    return cluster.start_daemon(
        k, ["--etcd", cluster.etcd.endpoint, "--cluster", "housing",
            "--rpc", f"{cluster.address(k)}:0", "--rpc-token", token],
        size=f"{size_mib}M")


def one_round(args, raw, round_no, workdir):
    """A fresh 2-node cluster; the flow with affinity on, then off."""
    raw_bytes = int(raw.memory_usage(index=True).sum())
    # A node may hold the raw table (or a fetched copy of it) and all the
    # intermediates: size each arena for both.
    size_mib = (int(raw_bytes * 1.1) + arena_size_for(args.rows)) // MiB
    results = []
    with Cluster(2, log=lambda m: print("  " + m, flush=True)) as c:
        token = os.path.join(c.dir, "token")
        with open(token, "w") as f:
            f.write("housing demo\n")
        os.chmod(token, 0o600)
        daemons = {k: start_node(c, k, size_mib, token) for k in (1, 2)}
        with trellis.connect(daemons[DATA_NODE].socket, start=False) as client:
            client.put(raw, name=RAW_NAME, persist=True)
        address = c.start_dask(daemons)
        nodes = {}
        for k, d in daemons.items():
            with trellis.connect(d.socket, start=False) as client:
                nodes[client.status()["instance_id"]] = k
        for affinity in (True, False):
            output = os.path.join(workdir, f"mse-{round_no}-{affinity}.txt")
            flow = housing_flow("trellis", raw_object=RAW_NAME, output=output,
                                name="housing-cluster")
            run_id = f"housing-cluster-{os.getpid()}-{round_no}-{'on' if affinity else 'off'}"
            t0 = time.perf_counter()
            run = flow.run(run_id=run_id, executor="dask", dask=address,
                           affinity=affinity)
            run.wait()
            elapsed = time.perf_counter() - t0
            with open(output) as f:
                mse = float(f.read().split()[-1])
            rows = [dict(p, host=f"node {nodes[p['node']]}") for p in run.placement()]
            results.append({"round": round_no, "affinity": affinity,
                            "end_to_end_s": elapsed,
                            "fetched_bytes": run.fetched_bytes(),
                            "mse": mse, "placement": rows,
                            "cluster_mode": c.mode})
            print(f"  affinity {'on ' if affinity else 'off'}: "
                  f"{elapsed:.2f} s, fetched {run.fetched_bytes() / 1e6:.1f} MB",
                  flush=True)
    return results


def report(results, args, raw_bytes):
    first = {r["affinity"]: r for r in results if r["round"] == 0}
    lines = [f"What ran: the housing flow (preprocess -> train -> test) with the "
             f"dask executor on 2 nodes ({results[0]['cluster_mode']}: one trellisd "
             f"and one Dask worker each); the raw table ({args.rows:,} rows, "
             f"{raw_bytes / 1e6:.0f} MB) was put on node {DATA_NODE}.", ""]
    for affinity in (True, False):
        r = first[affinity]
        lines.append(f"affinity {'on' if affinity else 'off'} "
                     f"({'each step on the node with most of its input bytes' if affinity else 'steps dealt round-robin over the nodes'}):")
        lines.append(f"  {'step':<11} {'ran on':<7} {'input here MB':>13} "
                     f"{'fetched MB':>10} {'wall s':>7}")
        for p in r["placement"]:
            lines.append(f"  {p['step']:<11} {p['host']:<7} "
                         f"{p['input_bytes_local'] / 1e6:>13.1f} "
                         f"{p['fetched_bytes'] / 1e6:>10.1f} {p['wall_s']:>7.2f}")
    lines.append("")
    lines.append("| affinity | rounds | end-to-end s (median) | bytes fetched across nodes (median) | MSE |")
    lines.append("|---|---:|---:|---:|---:|")
    summary = {}
    for affinity in (True, False):
        mine = [r for r in results if r["affinity"] == affinity]
        summary[affinity] = {
            "end_to_end_s": statistics.median(r["end_to_end_s"] for r in mine),
            "fetched_bytes": statistics.median(r["fetched_bytes"] for r in mine)}
        lines.append(f"| {'on' if affinity else 'off'} | {len(mine)} | "
                     f"{summary[affinity]['end_to_end_s']:.2f} | "
                     f"{summary[affinity]['fetched_bytes']:,.0f} | {mine[0]['mse']:.6f} |")
    on, off = summary[True], summary[False]
    lines.append("")
    lines.append(f"Meaning: placing each step next to its data moved "
                 f"{on['fetched_bytes'] / 1e6:.0f} MB between the nodes instead of "
                 f"{off['fetched_bytes'] / 1e6:.0f} MB, and the flow took "
                 f"{on['end_to_end_s']:.2f} s instead of {off['end_to_end_s']:.2f} s.")
    return "\n".join(lines) + "\n", summary


def main(argv=None):
    args = parse_args(argv)
    os.environ["TRELLIS_FLOW_DIR"] = workdir = tempfile.mkdtemp(prefix="trellis-hc-")
    raw = generate.generate(args.rows, args.seed)
    raw_bytes = int(raw.memory_usage(index=True).sum())
    results = []
    for round_no in range(args.rounds):
        print(f"[round {round_no + 1}/{args.rounds}] fresh 2-node cluster ...", flush=True)
        results += one_round(args, raw, round_no, workdir)
    text, summary = report(results, args, raw_bytes)
    print()
    print(text, end="")
    mses = {r["mse"] for r in results}
    if args.md:
        m = machine_info()
        with open(args.md, "w") as f:
            f.write(f"# Housing flow on 2 nodes, {args.rows:,} rows, affinity on vs off\n\n"
                    f"Command: `{' '.join(sys.argv)}`\n\n"
                    f"Machine: {m['cpu_model']}, {m['nproc']} CPUs, "
                    f"{m['mem_total_gib']} GiB, Linux {m['kernel']}; Python "
                    f"{m['python']}, pandas {m['pandas']}, scikit-learn "
                    f"{m['sklearn']}; trellis {m['git_commit']}; {m['date']}. "
                    f"Both nodes are network namespaces of this one machine "
                    f"(veth pairs on a bridge), so they share its 2 CPUs.\n\n"
                    "```\n" + text + "```\n"
                    + ("MSE identical across all runs.\n" if len(mses) == 1 else
                       "MSE DIFFERS between runs.\n"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "machine": machine_info(),
                       "raw_bytes": raw_bytes, "runs": results,
                       "summary": {("on" if k else "off"): v for k, v in summary.items()},
                       "mse_identical": len(mses) == 1}, f, indent=1)
            f.write("\n")
    return 0 if len(mses) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
