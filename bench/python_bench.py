#!/usr/bin/python3
"""Python benchmark: put/get of a pandas DataFrame of 46 int64 columns (the
shape of the seed pipelines) through trellis, against the alternatives a
pipeline would otherwise use, all measured in one run:

  memcpy       numpy copy of the same bytes into touched memory (put baseline)
  trellis      client.put / client.get (a reserved arena: pre-faulted pages)
  pickle-disk  DataFrame.to_pickle / read_pickle on local disk
  pickle-shm   the same on /dev/shm
  redis        pickle.dumps + SET / GET + pickle.loads, redis-server started
               here on a free loopback port (values over 512 MB, Redis' bulk
               limit, are skipped)
  shm          multiprocessing.shared_memory: copy the block in / map it and
               wrap it in a DataFrame without copying

Every get runs in a separate, long-lived reader process (so it reads what
another process wrote, as a pipeline step does, and its start-up is not
timed). Each figure is the median of --rounds rounds. Results go to
bench/results/python_bench.{json,md} with the machine they ran on.

  PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py \
      --sizes 100M,1G,4G --rounds 3
"""

import argparse
import datetime
import gc
import json
import os
import pickle
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

NUM_COLUMNS = 46
REDIS_LIMIT = 512 << 20
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text):
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


def human(nbytes):
    for unit in ("G", "M", "K"):
        if nbytes >= UNITS[unit]:
            return f"{nbytes / UNITS[unit]:g}{unit}"
    return str(nbytes)


def make_frame(nbytes):
    rows = max(1, nbytes // (NUM_COLUMNS * 8))
    data = np.empty((NUM_COLUMNS, rows), dtype=np.int64)  # one pandas block
    for i in range(NUM_COLUMNS):
        data[i] = np.arange(rows, dtype=np.int64) * (i + 1)
    frame = pd.DataFrame(data.T, columns=[f"col_{i}" for i in range(NUM_COLUMNS)], copy=False)
    # The usual layout of a loaded frame: one C-contiguous (columns, rows) block.
    assert frame._mgr.nblocks == 1 and frame._mgr.blocks[0].values.flags.c_contiguous
    return frame


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def check(frame, rows):
    """Cheap proof the reader got the data (one page touched)."""
    assert frame.shape == (rows, NUM_COLUMNS), frame.shape
    assert int(frame.iat[rows - 1, NUM_COLUMNS - 1]) == (rows - 1) * NUM_COLUMNS


# ---------------------------------------------------------------- reader side

def reader_main():
    """Reader process: one JSON request per stdin line, one JSON reply."""
    client = None
    for line in sys.stdin:
        req = json.loads(line)
        op, rows = req["op"], req["rows"]
        if op == "trellis":
            import trellis

            if client is None:
                client = trellis.connect(req["socket"], start=False)
            seconds, frame = timed(lambda: client.get(trellis.ObjectID(req["oid"])))
        elif op == "pickle":
            seconds, frame = timed(lambda: pd.read_pickle(req["path"]))
        elif op == "redis":
            import redis

            conn = redis.Redis(port=req["port"])
            conn.ping()
            seconds, frame = timed(lambda: pickle.loads(conn.get("frame")))
            conn.close()
        elif op == "shm":
            from multiprocessing import resource_tracker, shared_memory

            def attach():
                shm = shared_memory.SharedMemory(req["name"])
                block = np.ndarray((NUM_COLUMNS, rows), np.int64, buffer=shm.buf)
                return shm, pd.DataFrame(block.T, columns=req["columns"], copy=False)

            seconds, (shm, frame) = timed(attach)
            resource_tracker.unregister(shm._name, "shared_memory")  # the writer owns it
        else:
            raise ValueError(op)
        check(frame, rows)
        del frame
        if op == "shm":
            shm.close()
        gc.collect()
        print(json.dumps({"seconds": seconds}), flush=True)


class Reader:
    def __init__(self):
        env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, __file__, "--reader"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def get(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"reader failed on {request['op']}")
        return json.loads(line)["seconds"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(60)


# ---------------------------------------------------------------- alternatives

def bench_memcpy(frame, rounds):
    block = frame._mgr.blocks[0].values
    dest = np.empty_like(block)
    dest.fill(0)  # touch every page first, like a reserved arena
    times = [timed(lambda: np.copyto(dest, block))[0] for _ in range(rounds)]
    return {"put": times}


def bench_trellis(frame, rounds, reader, client):
    puts, gets = [], []
    for _ in range(rounds):
        seconds, oid = timed(lambda: client.put(frame))
        puts.append(seconds)
        gets.append(reader.get(op="trellis", socket=client.socket, oid=str(oid), rows=len(frame)))
        client.delete(oid)
    return {"put": puts, "get": gets}


def bench_pickle(frame, rounds, reader, directory):
    path = os.path.join(directory, "trellis_bench_frame.pkl")
    puts, gets = [], []
    try:
        for _ in range(rounds):
            puts.append(timed(lambda: frame.to_pickle(path))[0])
            gets.append(reader.get(op="pickle", path=path, rows=len(frame)))
            os.unlink(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return {"put": puts, "get": gets}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self):
        import redis

        self.dir = tempfile.mkdtemp(prefix="trellis-bench-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.conn.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_redis(frame, rounds, reader, server):
    puts, gets = [], []
    for _ in range(rounds):
        puts.append(timed(lambda: server.conn.set(
            "frame", pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)))[0])
        gets.append(reader.get(op="redis", port=server.port, rows=len(frame)))
        server.conn.delete("frame")
    return {"put": puts, "get": gets}


def bench_shared_memory(frame, rounds, reader):
    from multiprocessing import shared_memory

    block = frame._mgr.blocks[0].values
    puts, gets = [], []
    for _ in range(rounds):
        def put():
            shm = shared_memory.SharedMemory(create=True, size=block.nbytes)
            np.copyto(np.ndarray(block.shape, block.dtype, buffer=shm.buf), block)
            return shm

        seconds, shm = timed(put)
        puts.append(seconds)
        try:
            gets.append(reader.get(op="shm", name=shm.name, rows=len(frame),
                                   columns=list(frame.columns)))
        finally:
            shm.close()
            shm.unlink()
    return {"put": puts, "get": gets}


# ---------------------------------------------------------------- reporting

def machine_info():
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except OSError:
            return ""

    model = next((line.split(":", 1)[1].strip() for line in run(["lscpu"]).splitlines()
                  if line.startswith("Model name")), platform.processor())
    with open("/proc/meminfo") as f:
        mem_kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    commit = run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse",
                  "--short", "HEAD"]).strip()
    return {"cpu": model, "nproc": os.cpu_count(), "memory_gib": round(mem_kib / (1 << 20), 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "numpy": np.__version__, "pandas": pd.__version__, "commit": commit,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def summarize(raw):
    """Medians over the rounds after the first (warm-up: the first put in a
    process maps fresh pages, the first get imports converters); the first
    round is kept as first_<op>."""
    out = {k: statistics.median(v[1:]) for k, v in raw.items()}
    out.update({f"first_{k}": v[0] for k, v in raw.items()})
    return out


def write_report(results, machine, args, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "python_bench.json"), "w") as f:
        json.dump({"machine": machine, "args": vars(args), "results": results}, f, indent=2)
    lines = [
        "# Python benchmark: 46-int64-column DataFrame",
        "",
        f"Machine: {machine['cpu']}, {machine['nproc']} CPUs, {machine['memory_gib']} GiB, "
        f"kernel {machine['kernel']}; Python {machine['python']}, numpy {machine['numpy']}, "
        f"pandas {machine['pandas']}; commit {machine['commit']}, {machine['date']}.",
        "",
        f"Command: `{args.command}`",
        "",
        f"Medians of {args.rounds} rounds after a warm-up round, seconds (first put/get: "
        "the warm-up round). Gets run in a separate, long-lived reader process. trellis "
        "daemon: `--reserve` (pre-faulted arena); the first put in a process still takes "
        "minor faults mapping the arena's pages into it.",
        "",
    ]
    for entry in results:
        size, m = entry["size"], entry["medians"]
        lines += [f"## {entry['label']} ({entry['rows']:,} rows x {NUM_COLUMNS} columns, "
                  f"{size / 1e9:.2f} GB)", "",
                  "| method | put s | get s | put GB/s | first put s | first get s |",
                  "|---|---|---|---|---|---|"]
        for method, fig in m.items():
            if "skipped" in fig:
                lines.append(f"| {method} | skipped: {fig['skipped']} | | |")
                continue
            put, get = fig.get("put"), fig.get("get")
            first_get = fig.get("first_get")
            lines.append(f"| {method} | {put:.4f} | {'' if get is None else f'{get:.6f}'} | "
                         f"{size / put / 1e9:.2f} | {fig['first_put']:.4f} | "
                         f"{'' if first_get is None else f'{first_get:.6f}'} |")
        ratios = entry["ratios"]
        lines += ["", "Ratios: " + ", ".join(f"{k} = {v:,.1f}" for k, v in ratios.items()), ""]
    lines += [
        "Targets (issue 3): get >= 1000x faster than read_pickle at 1 GB; "
        "put within 1.5x of a plain memcpy of the same bytes.",
        "",
        "Reference (/work/shared/ANCHORS.md, Vineyard 0.24.4 on the same kind of machine, "
        "46 int64 columns x 3,000,000 rows = 1.10 GB): put 0.13-0.15 s against a same-run "
        "memcpy of 0.088 s (1.5-1.7x), get from another process 12-17 ms, 143 round trips "
        "per put. trellis puts such a frame in 2 round trips and gets it in 1.",
        "",
        "A trellis get is one GetMeta round trip plus rebuilding the pandas blocks. "
        "The daemon keeps each object's tree encoded as MessagePack and holds only its "
        "distinct blobs (one for such a frame), so it answers from cache; the extension "
        "decodes the reply straight into Python objects and reads a DataFrame's plain "
        "numeric columns as a block plan (python/src/tree_decode.h), so Python makes "
        "one 2-d array per run of same-dtype columns and no object per column.",
        "",
        "Where a get's ~0.45-0.5 ms goes (2026-11-21, timestamps in both processes; the "
        "reader is cold because the put's 1 GB copy has just evicted every cache, which "
        "makes each step 3-10x its warm cost): client encodes and sends the request ~30 us; "
        "daemon wakes from epoll ~70-80 us, decodes the request ~35 us, answers from its "
        "cache ~30 us; client receives ~20 us; the extension decodes the 10 KB reply ~60 us; "
        "Python and pandas build the frame (about 80 calls) ~150-200 us. The same get "
        "repeated warm takes ~0.1 ms. History of this median at 1 GB: 0.84 ms (per-column "
        "dicts planned in Python) -> 0.57 ms (block plan in C++, pandas blocks without "
        "re-verification) -> 0.50 ms (requests encoded without a JSON DOM; client polls "
        "up to 300 us for the reply instead of 50 us, yielding between polls).",
        "",
    ]
    with open(os.path.join(out_dir, "python_bench.md"), "w") as f:
        f.write("\n".join(lines))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100M,1G,4G",
                        help="DataFrame sizes, comma-separated (default 100M,1G,4G)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--daemon-size", default=None,
                        help="trellisd arena (default: 1.1 x the largest frame + 256M)")
    parser.add_argument("--disk-dir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="local-disk directory for to_pickle (default: bench/)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results"))
    parser.add_argument("--skip", default="", help="methods to skip, comma-separated")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the markdown from the JSON in --out; measure nothing")
    parser.add_argument("--reader", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader:
        return reader_main()
    if args.report_only:
        with open(os.path.join(args.out, "python_bench.json")) as f:
            saved = json.load(f)
        print(write_report(saved["results"], saved["machine"],
                           argparse.Namespace(**saved["args"]), args.out))
        return None
    args.command = " ".join(["/usr/bin/python3", "bench/python_bench.py"] + sys.argv[1:])

    import trellis

    sizes = [parse_size(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    daemon_size = args.daemon_size or f"{(int(max(sizes) * 1.1) >> 20) + 256}M"
    workdir = tempfile.mkdtemp(prefix="trellis-bench-", dir="/tmp")
    daemon = trellis.start_daemon(os.path.join(workdir, "bench.sock"), size=daemon_size,
                                  detach=False, reserve=True)
    client = trellis.connect(daemon.socket, start=False)
    reader = Reader()
    redis_server = RedisServer() if "redis" not in skip else None
    results = []
    try:
        for size in sizes:
            frame = make_frame(size)
            nbytes = frame._mgr.blocks[0].values.nbytes
            label = human(size)
            print(f"== {label}: {len(frame):,} rows, {nbytes / 1e9:.2f} GB", flush=True)
            n = args.rounds + 1  # + warm-up
            raw = {"memcpy": bench_memcpy(frame, n)}
            runs = [
                ("trellis", lambda: bench_trellis(frame, n, reader, client)),
                ("pickle-disk", lambda: bench_pickle(frame, n, reader, args.disk_dir)),
                ("pickle-shm", lambda: bench_pickle(frame, n, reader, "/dev/shm")),
                ("redis", lambda: bench_redis(frame, n, reader, redis_server)),
                ("shared_memory", lambda: bench_shared_memory(frame, n, reader)),
            ]
            medians = {"memcpy": summarize(raw["memcpy"])}
            for method, run in runs:
                if method in skip:
                    continue
                if method == "redis" and nbytes > REDIS_LIMIT:
                    medians[method] = {"skipped": "over Redis' 512 MB value limit"}
                    continue
                raw[method] = run()
                medians[method] = summarize(raw[method])
                print(f"  {method:14s} {medians[method]}", flush=True)
                gc.collect()
            t = medians["trellis"]
            ratios = {"put / memcpy": t["put"] / medians["memcpy"]["put"]}
            for other in ("pickle-disk", "pickle-shm", "redis", "shared_memory"):
                if other in medians and "get" in medians[other]:
                    ratios[f"{other} get / trellis get"] = medians[other]["get"] / t["get"]
            results.append({"label": label, "size": nbytes, "rows": len(frame),
                            "raw": raw, "medians": medians, "ratios": ratios})
            del frame
            gc.collect()
    finally:
        reader.close()
        if redis_server:
            redis_server.stop()
        client.close()
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(write_report(results, machine_info(), args, args.out))


if __name__ == "__main__":
    main()


def machine_line(m):
    """One Markdown line naming the machine a result ran on (machine_info())."""
    return (f"Machine: {m['cpu']}, {m['nproc']} CPUs, {m['memory_gib']} GiB, Linux "
            f"{m['kernel']}, Python {m['python']}, numpy {m['numpy']}, pandas "
            f"{m['pandas']}; trellis {m['commit']}; {m['date']}.")


def emit_report(lines, md_path, json_path, data):
    """Prints the Markdown `lines` and writes them to `md_path` and `data` as
    JSON to `json_path` (each if given)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if md_path:
        with open(md_path, "w") as f:
            f.write(text)
    if json_path:
        with open(json_path, "w") as f:
            f.write(json.dumps(data, indent=1) + "\n")
