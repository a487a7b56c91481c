#!/usr/bin/python3
"""The seed's job, parallel through trellis: the same input and output
formats as old_pipeline.py, rows batched 100 at a time, classified on N
worker processes, written in input order.

Usage:
  parallel_job.py --input INPUT --output OUTPUT [--workers 2]
  parallel_job.py --listen HOST:PORT --sink HOST:PORT [--workers 2]   (framed TCP)
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classifier import classify_df  # noqa: E402

from trellis import stream  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", help="CSV file ('-': stdin)")
    p.add_argument("--listen", help="HOST:PORT of the framed TCP source")
    p.add_argument("--output", help="CSV file ('-': stdout)")
    p.add_argument("--sink", help="HOST:PORT of the framed TCP receiver")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rows", type=int, default=100, help="rows per batch")
    p.add_argument("--stats", action="store_true", help="print the job's stats as JSON")
    args = p.parse_args(argv)
    if (args.input is None) == (args.listen is None):
        p.error("give one of --input and --listen")
    if (args.output is None) == (args.sink is None):
        p.error("give one of --output and --sink")
    if args.listen:
        host, port = args.listen.rsplit(":", 1)
        job = stream.from_tcp(host, int(port))
        print(f"listening on {job.source.host}:{job.source.port}", file=sys.stderr, flush=True)
    elif args.input == "-":
        job = stream.from_stdin()
    else:
        job = stream.from_file(args.input)
    if args.sink:
        host, port = args.sink.rsplit(":", 1)
        sink = stream.to_tcp(host, int(port))
    else:
        sink = stream.to_stdout() if args.output == "-" else stream.to_file(args.output)
    stats = job.batch(rows=args.rows).parallel(classify_df, workers=args.workers).sink(sink).run()
    if args.stats:
        print(json.dumps(stats), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
