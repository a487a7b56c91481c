#!/usr/bin/python3
"""The short parallel pandas demo of `make demo`: the serial job against
the trellis job on 1 and 2 workers, through a file and through the framed
TCP sender and receiver; checks every output is byte-identical to the
serial one. Usage: demo.py [--rows 10000]"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"


def timed(argv, **kwargs):
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, **kwargs)
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000)
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="trellis-pp-")
    os.environ["TRELLIS_SOCKET"] = os.path.join(work, "trellis.sock")
    import trellis
    daemon = trellis.start_daemon(size="256M")
    try:
        src = os.path.join(work, "input.csv")
        subprocess.run([PY, os.path.join(HERE, "generate.py"), "--rows", str(args.rows),
                        "--out", src], check=True)
        print(f"parallel pandas: {args.rows:,} rows, the seed's classify_df (a CPU-heavy "
              f"DataFrame.apply per row), batches of 100 rows, {os.cpu_count()} CPUs")
        serial_out = os.path.join(work, "serial.csv")
        serial = timed([PY, os.path.join(HERE, "old_pipeline.py"), src, serial_out])
        expected = open(serial_out, "rb").read()
        print(f"  {'serial (old_pipeline.py)':<34} {serial:6.2f} s")
        ok = True

        def report(what, seconds, path):
            nonlocal ok
            same = open(path, "rb").read() == expected
            ok &= same
            print(f"  {what:<34} {seconds:6.2f} s  {serial / seconds:4.2f}x  output "
                  f"{'identical' if same else 'DIFFERENT'}")

        job = os.path.join(HERE, "parallel_job.py")
        for n in (1, 2):
            out = os.path.join(work, f"par{n}.csv")
            report(f"trellis, {n} worker(s), file",
                   timed([PY, job, "--input", src, "--output", out, "--workers", str(n)]), out)
        tcp_out = os.path.join(work, "tcp.csv")
        receiver = subprocess.Popen([PY, os.path.join(HERE, "receiver.py"), "127.0.0.1", "0",
                                     tcp_out], stdout=subprocess.PIPE, text=True,
                                    stderr=subprocess.DEVNULL)
        sink_port = receiver.stdout.readline().strip()
        t0 = time.perf_counter()
        par = subprocess.Popen([PY, job, "--listen", "127.0.0.1:0", "--sink",
                                f"127.0.0.1:{sink_port}", "--workers", "2"],
                               stderr=subprocess.PIPE, text=True)
        port = par.stderr.readline().strip().rsplit(":", 1)[1]
        subprocess.run([PY, os.path.join(HERE, "send.py"), src, "127.0.0.1", port],
                       check=True, stderr=subprocess.DEVNULL)
        par.wait()
        receiver.wait()
        report("trellis, 2 workers, framed TCP", time.perf_counter() - t0, tcp_out)
        print("Meaning: split over worker processes, with the batches handed over through "
              "the store, the job gives the serial job's exact bytes; 2 workers can at most "
              "double the speed on this machine's cores (bench/results/parallel_pandas.md "
              "has the larger runs).")
        return 0 if ok else 1
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
