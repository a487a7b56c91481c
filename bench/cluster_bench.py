#!/usr/bin/python3
"""Cluster benchmark: what crossing a network costs, against the network.

    /usr/bin/python3 bench/cluster_bench.py [--sizes 1M,16M,256M,1G,4G]
                                            [--out bench/results]

Builds two test hosts (python/tests/cluster_fixture.py: network namespaces
joined by veth pairs, a real etcd on the host side; loopback if namespaces
cannot be made, which it says) with one trellisd each, and measures in one
run:

* iperf3 from node 1 to node 2 (the link), before each size and after;
* get(fetch=True) on node 2 of objects of 1 MiB ... 4 GiB put on node 1
  (bytes flow 1 -> 2, as iperf3's do), as GB/s and as a share of iperf3;
* the latency of a small get: by a remote client (trellis.connect over
  RPC, from the host side of the link), and the first get(fetch=True) of a
  small object of the other node (etcd lookups + RPC), against ping;
* a cluster-wide put_name on node 1 and get_name on node 2 against etcd's
  own etcdctl put/get (a process per call, as scripts use it) and against
  one kept-alive HTTP connection to etcd's JSON gateway (the floor: one
  etcd round trip).

Writes cluster_bench.md and cluster_bench.json with the machine.
"""

import argparse
import base64
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python" / "tests"), str(ROOT / "bench"),
                str(ROOT / "build" / "python")]

import trellis  # noqa: E402
from cluster_fixture import Cluster  # noqa: E402
from python_bench import human, machine_info, parse_size  # noqa: E402

CLUSTER = "bench"
TOKEN = "cluster bench secret"
MiB = 1 << 20


def repetitions(nbytes):
    """Enough rounds for a stable median without making 4 GiB take all day."""
    if nbytes <= 16 * MiB:
        return 10
    if nbytes <= 256 * MiB:
        return 5
    return 3


def fill(client, nbytes, seed):
    """A sealed blob of `nbytes` written in place (no copy of the data in
    this process); returns its id."""
    writer = client.create_blob(nbytes)
    view = np.frombuffer(memoryview(writer), dtype=np.uint8)
    words = view[: nbytes - nbytes % 8].view(np.uint64)
    words[:] = np.arange(seed, seed + words.size, dtype=np.uint64)
    view[words.size * 8:] = seed & 0xFF
    return writer.seal().id


def bench_fetch(a, b, nbytes, rounds):
    """Seconds of each get_meta(fetch=True) of a fresh blob of `nbytes`."""
    times = []
    for r in range(rounds):
        oid = fill(a, nbytes, seed=r + 1)
        began = time.perf_counter()
        meta = b.get_meta(oid, fetch=True)
        times.append(time.perf_counter() - began)
        if r == 0:  # the copy is the original, byte for byte
            mine, theirs = meta.blob(), a.get_blob(oid)
            assert np.array_equal(np.frombuffer(mine, np.uint8),
                                  np.frombuffer(theirs, np.uint8)), "fetched bytes differ"
            del mine, theirs
        del meta
        b.delete(oid)
        a.delete(oid)
    return times


def bench_remote_get(endpoint, token, rounds=2000):
    """Seconds per get of a 100-byte object by a client with no daemon of
    its own (RPC from the host side)."""
    with trellis.connect(endpoint, token=token) as remote:
        oid = remote.put(b"x" * 100)
        for _ in range(100):
            remote.get(oid)
        times = []
        for _ in range(rounds):
            began = time.perf_counter()
            remote.get(oid)
            times.append(time.perf_counter() - began)
        remote.delete(oid)
    return times


def bench_small_fetch(a, b, rounds=200):
    """Seconds of the first get(fetch=True) on node 2 of a small object of
    node 1 (etcd lookups, RPC GetMeta + ReadBlobs, replica)."""
    times = []
    for i in range(rounds):
        oid = a.put(np.arange(16) + i)
        began = time.perf_counter()
        b.get(oid, fetch=True)
        times.append(time.perf_counter() - began)
        b.delete(oid)
        a.delete(oid)
    return times


def ping_rtt(c):
    """Round-trip seconds of ping from node 2 to node 1 (20 probes)."""
    out = c.run(2, ["ping", "-c", "20", "-i", "0.05", "-q", c.address(1)]).stdout
    line = next(l for l in out.splitlines() if "min/avg/max" in l)
    return float(line.split("=")[1].split("/")[1]) / 1000


def bench_names(a, b, rounds=300):
    """put_name on node 1, then get_name of it on node 2, per call."""
    oid = a.put(1)
    put, get = [], []
    for i in range(rounds):
        began = time.perf_counter()
        a.put_name(oid, f"bench/n{i}")
        put.append(time.perf_counter() - began)
        began = time.perf_counter()
        assert b.get_name(f"bench/n{i}") == oid
        get.append(time.perf_counter() - began)
    for i in range(rounds):
        a.drop_name(f"bench/n{i}")
    return put, get


def bench_etcdctl(c, rounds=50):
    """etcdctl put and get from node 1, a process per call."""
    put, get = [], []
    for i in range(rounds):
        began = time.perf_counter()
        c.etcdctl(1, "put", f"/bench/etcdctl/{i}", "o0001000000000001")
        put.append(time.perf_counter() - began)
        began = time.perf_counter()
        c.etcdctl(1, "get", f"/bench/etcdctl/{i}")
        get.append(time.perf_counter() - began)
    return put, get


def bench_etcd_gateway(endpoint, rounds=300):
    """put and range on one kept-alive connection to etcd's v3 JSON gateway
    (from the host side, where etcd listens)."""
    host, port = endpoint.split("://", 1)[-1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def call(path, body):
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        reply = conn.getresponse()
        data = reply.read()
        assert reply.status == 200, data

    def b64(text):
        return base64.b64encode(text.encode()).decode()

    put, get = [], []
    for i in range(rounds):
        key = b64(f"/bench/gateway/{i}")
        began = time.perf_counter()
        call("/v3/kv/put", {"key": key, "value": b64("o0001000000000001")})
        put.append(time.perf_counter() - began)
        began = time.perf_counter()
        call("/v3/kv/range", {"key": key})
        get.append(time.perf_counter() - began)
    conn.close()
    return put, get


def med(xs):
    return statistics.median(xs)


def p99(xs):
    return sorted(xs)[min(len(xs) - 1, int(0.99 * len(xs)))]


def write_report(r, out_dir, command):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cluster_bench.json").write_text(json.dumps(r, indent=1) + "\n")
    m = r["machine"]
    link = med(r["iperf_gbit"])
    lines = [
        "# Cluster benchmark: fetch, small gets and names across a real link",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} CPUs, {m['memory_gib']} GiB, kernel "
        f"{m['kernel']}; Python {m['python']}, numpy {m['numpy']}; commit "
        f"{m['commit']}, {m['date']}.",
        "",
        f"Command: `{command}`",
        "",
        f"Test hosts: {r['mode']} ({r['hosts']}); one trellisd per node "
        f"(`--size {r['arena']}`, `--rpc` on the node's address with a token), "
        "etcd on the host side of the link. Load average before / after: "
        f"{r['load_before']} / {r['load_after']}.",
        "",
        "## Fetch vs the link",
        "",
        f"iperf3, node 1 -> node 2, one stream, 3 s: "
        f"{', '.join(f'{g:.1f}' for g in r['iperf_gbit'])} Gbit/s (one run "
        f"before each size's fetches and one after the last); the share below "
        f"is of their median, {link:.1f} Gbit/s = {link / 8:.2f} GB/s.",
        "",
        "`get_meta(oid, fetch=True)` on node 2 of a blob of node 1 (a fresh "
        "object each round; timed from the request to the reply, so it "
        "includes the etcd lookups, the plan, the copy into node 2's arena and "
        "the replica's registration). Medians; best in brackets.",
        "",
        "| size | rounds | fetch s | GB/s (best) | share of iperf3 |",
        "|---|---|---|---|---|",
    ]
    for f in r["fetch"]:
        gbs = f["bytes"] / med(f["seconds"]) / 1e9
        best = f["bytes"] / min(f["seconds"]) / 1e9
        lines.append(f"| {human(f['bytes'])} | {len(f['seconds'])} | "
                     f"{med(f['seconds']):.4f} | {gbs:.2f} ({best:.2f}) | "
                     f"{100 * gbs * 8 / link:.0f}% |")
    big = max(r["fetch"], key=lambda f: f["bytes"])
    share = big["bytes"] / med(big["seconds"]) * 8 / 1e9 / link
    lines += [
        "",
        f"Target: a large fetch at >= 80% of the same run's iperf3. "
        f"{human(big['bytes'])}: {100 * share:.0f}% "
        f"({'met' if share >= 0.8 else 'NOT met'}).",
        "",
        "## Small gets",
        "",
        "| what | median ms | p99 ms |",
        "|---|---|---|",
        f"| ping node 2 -> node 1 (avg of 20) | {1000 * r['ping_rtt']:.3f} | |",
        f"| remote client get of a 100-byte object (RPC, host -> node 1) | "
        f"{1000 * med(r['remote_get']):.3f} | {1000 * p99(r['remote_get']):.3f} |",
        f"| first get(fetch=True) on node 2 of a 128-byte object of node 1 | "
        f"{1000 * med(r['small_fetch']):.3f} | {1000 * p99(r['small_fetch']):.3f} |",
        "",
        "## Names across the cluster vs etcd itself",
        "",
        "| what | put ms | get ms |",
        "|---|---|---|",
        f"| trellis put_name on node 1 / get_name on node 2 | "
        f"{1000 * med(r['names'][0]):.3f} | {1000 * med(r['names'][1]):.3f} |",
        f"| etcdctl put / get (a process per call, node 1) | "
        f"{1000 * med(r['etcdctl'][0]):.3f} | {1000 * med(r['etcdctl'][1]):.3f} |",
        f"| etcd JSON gateway, one kept-alive connection (the floor) | "
        f"{1000 * med(r['gateway'][0]):.3f} | {1000 * med(r['gateway'][1]):.3f} |",
        "",
        f"Ratios: etcdctl put / put_name = "
        f"{med(r['etcdctl'][0]) / med(r['names'][0]):.1f}, etcdctl get / get_name = "
        f"{med(r['etcdctl'][1]) / med(r['names'][1]):.1f}; put_name / gateway put = "
        f"{med(r['names'][0]) / med(r['gateway'][0]):.1f}, get_name / gateway get = "
        f"{med(r['names'][1]) / med(r['gateway'][1]):.1f}.",
        "",
    ]
    notes = out_dir / "cluster_bench.md"
    kept = ""
    if notes.exists() and "\n## Findings" in notes.read_text():
        kept = notes.read_text()[notes.read_text().index("\n## Findings"):]
    notes.write_text("\n".join(lines) + kept)
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1M,16M,256M,1G,4G")
    p.add_argument("--arena", default="6G", help="--size of each trellisd")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    results = {"machine": machine_info(), "arena": args.arena,
               "load_before": " ".join(open("/proc/loadavg").read().split()[:3])}
    with Cluster(2) as c:
        results["mode"] = c.mode
        results["hosts"] = ", ".join(f"node {n.index} {n.address}" for n in c.nodes)
        token = os.path.join(c.dir, "token")
        Path(token).write_text(TOKEN + "\n")
        os.chmod(token, 0o600)
        daemons = [c.start_daemon(k, ["--etcd", c.etcd.endpoint, "--cluster", CLUSTER,
                                      "--rpc", f"{c.address(k)}:0", "--rpc-token", token,
                                      "--reserve"],
                                  size=args.arena) for k in (1, 2)]
        a = trellis.connect(daemons[0].socket, start=False)
        b = trellis.connect(daemons[1].socket, start=False)
        endpoint = a.cluster_info()["members"]
        endpoint = next(m["rpc_endpoint"] for m in endpoint if m["instance_id"] == a.instance_id)

        # iperf3 before each size and after the last: this VM's link speed
        # drifts, so the fetches are compared with the median of runs
        # spread over the same minutes.
        results["iperf_gbit"] = []
        bench_fetch(a, b, 16 * MiB, 2)  # warm-up: connections, page tables
        results["fetch"] = []
        for n in sizes:
            results["iperf_gbit"].append(c.iperf(server=2, client=1, seconds=3))
            t = bench_fetch(a, b, n, repetitions(n))
            results["fetch"].append({"bytes": n, "seconds": t})
            print(f"fetch {human(n)}: median {med(t):.4f} s, "
                  f"{n / med(t) / 1e9:.2f} GB/s", flush=True)
        results["iperf_gbit"].append(c.iperf(server=2, client=1, seconds=3))
        results["ping_rtt"] = ping_rtt(c)
        results["remote_get"] = bench_remote_get(endpoint, TOKEN)
        results["small_fetch"] = bench_small_fetch(a, b)
        results["names"] = bench_names(a, b)
        results["etcdctl"] = bench_etcdctl(c)
        results["gateway"] = bench_etcd_gateway(c.etcd.endpoint)
        a.close()
        b.close()
    results["load_after"] = " ".join(open("/proc/loadavg").read().split()[:3])
    write_report(results, Path(args.out), "/usr/bin/python3 bench/cluster_bench.py "
                 + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
