#!/usr/bin/python3
"""What waking the daemon costs: the round trip of a small request
(put_name) after the client has done N microseconds of other work, with the
daemon sleeping at once when idle (the default) and with --busy-poll-us.

On a VM whose idle CPU halts, a daemon idle longer than the guest's halt
polling (~200 us here) is woken through the host; busy polling keeps it
awake for its window; auto (the default) adapts the window to the gaps.
Medians of --count round trips per gap, and the daemon's CPU time as a
share of the wall time (what the polling costs).

Usage: wake_latency.py [--count 2000] [--gaps 0,50,100,300,1000]
                       [--busy-poll-us 300] [--md out.md] [--json out.json]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "bench")]


def busy(us):
    end = time.perf_counter() + us * 1e-6
    while time.perf_counter() < end:
        pass


def cpu_seconds(pid):
    """User + system CPU seconds process `pid` has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_trips(client, oid, gap_us, count, pid):
    """(median put_name round trip in microseconds after `gap_us` of work,
    the daemon's CPU time as a share of the wall time meanwhile)."""
    times = []
    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    for _ in range(count):
        busy(gap_us)
        t0 = time.perf_counter()
        client.put_name(oid, "x")
        times.append(time.perf_counter() - t0)
    cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - wall0)
    return statistics.median(times[count // 10:]) * 1e6, cpu


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--gaps", default="0,50,100,300,1000")
    p.add_argument("--busy-poll-us", type=int, default=300)
    p.add_argument("--md", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import trellis
    from python_bench import emit_report, machine_info, machine_line
    gaps = [int(g) for g in args.gaps.split(",")]
    settings = [0, args.busy_poll_us, "auto"]
    work = tempfile.mkdtemp(prefix="trellis-wake-")
    results = {}
    try:
        for poll in settings:
            socket = os.path.join(work, f"d{poll}.sock")
            daemon = trellis.start_daemon(socket, size="64M", busy_poll_us=poll)
            try:
                with trellis.connect(socket, start=False) as client:
                    oid = client.put(1)
                    for gap in gaps:
                        results[poll, gap] = round_trips(client, oid, gap, args.count,
                                                         daemon.pid)
                        print(f"busy-poll {poll:>4}, gap {gap:>5} us: "
                              f"{results[poll, gap][0]:.1f} us, daemon CPU "
                              f"{results[poll, gap][1]:.0%}", flush=True)
            finally:
                daemon.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = machine_info()
    lines = ["# Waking the daemon: a small request's round trip after the client's other work",
             "", f"Command: `{' '.join(sys.argv)}`", "", machine_line(m), "",
             f"Median `put_name` round trip (µs) from Python, {args.count} per cell, after "
             "the client spent the gap in a busy loop; in brackets the daemon's CPU time "
             "as a share of the wall time meanwhile (polling's cost).", "",
             "| gap before the request (µs) | " +
             " | ".join(f"--busy-poll-us {poll}" for poll in settings) + " |",
             "|---:|" + "---:|" * len(settings)]
    for gap in gaps:
        lines.append(f"| {gap} | " + " | ".join(
            f"{results[poll, gap][0]:.1f} ({results[poll, gap][1]:.0%})"
            for poll in settings) + " |")
    rows = [{"busy_poll_us": poll, "gap_us": gap, "round_trip_us": results[poll, gap][0],
             "daemon_cpu_share": results[poll, gap][1]}
            for poll in settings for gap in gaps]
    emit_report(lines, args.md, args.json, {"machine": m, "rows": rows})


if __name__ == "__main__":
    main()
