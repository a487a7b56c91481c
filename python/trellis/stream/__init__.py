"""trellis.stream: a pandas batch job split over worker processes, with the
store as the hand-off between them.

    from trellis import stream
    stats = (stream.from_file("input.csv")          # or from_stdin(), from_tcp(port=...)
             .batch(rows=100)                        # the first line is the header
             .parallel(classify_df, workers=2)       # fn(DataFrame) -> DataFrame or None
             .sink(stream.to_file("output.csv"))     # or to_stdout(), to_tcp(host, port)
             .run())

Each batch of CSV lines is put in the store once; a worker gets it by id,
builds the DataFrame (``read_csv(index_col=0, dtype=str, engine="python")``
by default, as the seed's job), calls the function, and puts the result's
``to_csv(header=False)``; the coordinator writes results in input order.
Only ids travel between the processes. ``from_frames(iterable)`` feeds
DataFrames from Python instead (each one batch; the worker gets it zero-copy,
read-only). See _runner.py for the guarantees (order, back-pressure,
retries, errors)."""

import sys

import trellis
from trellis.stream._io import (FileSink, FileSource, FrameSource, SourceError,
                                StdinSource, StdoutSink, TcpSink, TcpSource,
                                read_frames, receive_framed, send_framed)
from trellis.stream._runner import JobFailed, Node, Runner

__all__ = ["Job", "JobFailed", "Node", "SourceError", "from_file", "from_stdin",
           "from_tcp", "from_frames", "to_file", "to_stdout", "to_tcp",
           "read_frames", "send_framed", "receive_framed"]

#: The seed's read_csv and to_csv options.
SEED_READ_CSV = {"index_col": 0, "dtype": str, "engine": "python"}
SEED_TO_CSV = {"header": False}


class Job:
    """A source, its batching, a parallel function and a sink; run() runs it."""

    def __init__(self, source):
        self.source = source
        self.rows = 100
        self.fn = None
        self.workers = 1
        self.retries = 2
        self.max_in_flight = None
        self.read_csv = dict(SEED_READ_CSV)
        self.to_csv = dict(SEED_TO_CSV)
        self.sink_obj = None
        self.socket = None
        self.nodes = None
        self.fork = True

    def batch(self, rows=100):
        """Batches of `rows` data lines (the header is kept once and given
        to every batch)."""
        if not isinstance(rows, int) or rows < 1:
            raise trellis.InvalidArgument(f"batch rows must be a positive int, got {rows!r}")
        self.rows = rows
        return self

    def parallel(self, fn, workers=2, *, nodes=None, retries=2, max_in_flight=None,
                 read_csv=None, to_csv=None, socket=None, fork=True):
        """Runs fn(DataFrame) on `workers` processes on this machine, or on
        `nodes` (a list of stream.Node: workers next to other daemons of the
        cluster; batches are fetched there, results fetched back). A batch
        whose worker dies is retried up to `retries` times; at most
        `max_in_flight` batches (default 4 per worker) exist at once.
        `read_csv`/`to_csv` replace the seed's options; `socket` is the
        coordinator's daemon (default $TRELLIS_SOCKET; one is started if
        none runs). `fork`: start the first workers on this machine by
        forking the coordinator (pandas already loaded) rather than as new
        interpreters; replacements are always new interpreters."""
        if not callable(fn):
            raise trellis.InvalidArgument("parallel needs a callable")
        if nodes is not None:
            nodes = list(nodes)
            if not nodes or not all(isinstance(n, Node) for n in nodes):
                raise trellis.InvalidArgument("nodes must be a non-empty list of stream.Node")
            workers = sum(n.workers for n in nodes)
        if not isinstance(workers, int) or workers < 1:
            raise trellis.InvalidArgument(f"workers must be a positive int, got {workers!r}")
        self.fn, self.workers, self.retries, self.nodes = fn, workers, retries, nodes
        self.fork = bool(fork)
        self.max_in_flight = max_in_flight or 4 * workers
        if self.max_in_flight < 1:
            raise trellis.InvalidArgument("max_in_flight must be at least 1")
        if read_csv is not None:
            self.read_csv = dict(read_csv)
        if to_csv is not None:
            self.to_csv = dict(to_csv)
        self.socket = socket
        return self

    def sink(self, sink):
        self.sink_obj = sink
        return self

    def run(self, progress=None):
        """Runs the job; returns its stats (rows_in, rows_out, batches,
        seconds, rows_per_s, retries, worker_restarts, fn_s, worker_busy_s,
        max_in_flight_seen, arena_used_max). `progress`: a progress line
        on stderr (default: when stderr is a terminal). Raises JobFailed."""
        if self.fn is None or self.sink_obj is None:
            raise trellis.InvalidArgument("a job needs parallel(fn) and sink(...) before run()")
        if progress is None:
            progress = sys.stderr.isatty()
        return Runner(self, progress).run()


def from_file(path):
    return Job(FileSource(path))


def from_stdin():
    return Job(StdinSource())


def from_tcp(host="127.0.0.1", port=0, limit=None):
    """A job reading framed lines from the first client to connect to
    host:port (job.source.port is the port, also when 0 picked it)."""
    return Job(TcpSource(host, port, **({"limit": limit} if limit else {})))


def from_frames(frames):
    return Job(FrameSource(frames))


def to_file(path):
    return FileSink(path)


def to_stdout():
    return StdoutSink()


def to_tcp(host, port):
    return TcpSink(host, port)

