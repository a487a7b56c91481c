"""The coordinator of a parallel batch job.

One thread, one loop: read the source a batch at a time, put each batch in
the store, hand its id to a worker process, collect result ids, and write
results to the sink strictly in input order (a reorder buffer keyed by
batch number). Only ids and row counts cross the pipes; the bytes stay in
the store.

Guarantees:
  * order and bytes: output batch k is written after batches 0..k-1 and
    is the worker's to_csv of batch k, so the output equals the serial
    job's when the function treats rows independently;
  * back-pressure: at most `max_in_flight` batches exist at once (read,
    queued, being classified or waiting in the reorder buffer); the source
    is not read further until the oldest is written, so the arena holds a
    bounded amount whatever the input size;
  * a worker that dies (crash, SIGKILL) has its batches retried on the
    others and is replaced; a batch retried `retries` times fails the job,
    naming its rows. A result is accepted once: no batch is lost or
    written twice;
  * an exception in the function fails the job at once, naming the batch's
    rows and quoting the traceback, after writing every batch before it;
  * malformed input fails the job with the source's message, after every
    row read before it has been classified and written."""

import base64
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque

import cloudpickle
import numpy as np

import trellis
from trellis import _daemon
from trellis._shipping import delete_quietly, file_tail, pickle_callable, pythonpath
from trellis.stream._io import SourceError

PY = "/usr/bin/python3"
#: Requests queued at one worker: the next batch is there when it finishes.
PREFETCH = 2
#: Workers in a row that die before finishing any batch fail the job (one
#: that cannot even start, e.g. cannot load the function).
MAX_START_FAILURES = 3


class JobFailed(trellis.TrellisError, RuntimeError):
    """The job could not complete; the message names the batch and rows."""


class Node:
    """Where workers run: `workers` of them, next to the daemon at `socket`,
    started through `prefix` (an argv prefix that runs a command on that
    machine: () for this one, ["ssh", "host"], ["ip", "netns", "exec",
    "ns"]...). The worker talks to the coordinator over its stdin/stdout,
    so any prefix that forwards them works."""

    def __init__(self, socket, workers=1, prefix=()):
        if not isinstance(workers, int) or workers < 1:
            raise trellis.InvalidArgument(f"a node needs at least one worker, got {workers!r}")
        self.socket, self.workers, self.prefix = socket, workers, tuple(prefix)

    def __repr__(self):
        return f"Node({self.socket!r}, workers={self.workers})"


class _Batch:
    __slots__ = ("seq", "id", "first_row", "rows", "attempts")

    def __init__(self, seq, oid, first_row, rows):
        self.seq, self.id, self.first_row, self.rows = seq, oid, first_row, rows
        self.attempts = 0

    def describe(self):
        return (f"batch {self.seq} (rows {self.first_row}-"
                f"{self.first_row + self.rows - 1})")


class _Worker:
    """A worker process and what it holds."""

    def __init__(self, number, node, proc, log_path, spec):
        self.number, self.node, self.proc = number, node, proc
        self.log_path = log_path
        self.answered = False  # has it finished a batch yet?
        self._write(spec + b"\n")
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.holding = {}  # seq -> _Batch

    def send(self, batch):
        """Hands `batch` over. A worker that already died (its end not yet
        read) still counts as holding it: its death puts it back."""
        self._write(json.dumps({"seq": batch.seq, "id": batch.id,
                                "rows": batch.rows}).encode() + b"\n")
        self.holding[batch.seq] = batch

    def drop(self, oid):
        """Asks the worker to delete its result `oid` (on its node)."""
        self._write(json.dumps({"drop": oid}).encode() + b"\n")

    def _write(self, line):
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: reading its end says so

    def replies(self):
        """Complete reply lines read so far; None once the worker is gone."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line]

    def leftover_replies(self):
        """What a stopped worker answered that was not read yet."""
        os.set_blocking(self.fd, True)
        rest = self.buffer + self.proc.stdout.read()
        self.buffer = b""
        return [json.loads(line) for line in rest.split(b"\n") if line.strip()]

    def close_input(self):
        """The end of its requests: the worker finishes what it holds and
        exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def stop(self):
        self.close_input()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Forked:
    """A worker forked from the coordinator, with what subprocess.Popen
    offers _Worker (stdin, stdout, poll, wait, kill, returncode). Only the
    first workers on this machine are forked, before the coordinator
    connects to the store, so the child inherits no client and no thread
    of ours; it has pandas loaded already, which saves each worker the
    ~0.3 s of importing it. The child runs the worker loop on fds 0-2 and
    leaves with os._exit."""

    def __init__(self, socket, log_path):
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.dup2(requests_r, 0)
                os.dup2(replies_w, 1)
                os.dup2(log, 2)
                for fd in map(int, os.listdir("/proc/self/fd")):
                    if fd > 2:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                sys.stdin = open(0, "r", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                os.environ["TRELLIS_SOCKET"] = socket
                from trellis.stream import _worker
                code = _worker.main([])
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(requests_r)
        os.close(replies_w)
        os.close(log)
        self.pid = pid
        self.stdin = os.fdopen(requests_w, "wb")
        self.stdout = os.fdopen(replies_r, "rb")
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            time.sleep(0.002)
        return self.returncode

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _exit_reason(code):
    return (f"killed by signal {-code}" if code is not None and code < 0
            else f"exited with status {code}")


class Runner:
    """Runs one job (see Job.run)."""

    def __init__(self, job, progress):
        self.job = job
        self.socket = job.socket or trellis.default_socket()
        self.client = None  # connected once the first workers are forked
        self.progress = progress
        self.stats = {"rows_in": 0, "rows_out": 0, "batches": 0, "retries": 0,
                      "worker_restarts": 0, "fn_s": 0.0, "parse_s": 0.0,
                      "encode_s": 0.0, "store_s": 0.0, "store_cpu_s": 0.0,
                      "worker_busy_s": 0.0, "coordinator_cpu_s": 0.0,
                      "coordinator_s": 0.0,
                      "max_in_flight_seen": 0, "arena_used_max": 0,
                      "batches_per_node": {}}
        self.batches = {}       # seq -> _Batch, until written
        self.queue = deque()    # batches waiting for a worker
        self.done = {}          # seq -> (result id, rows) waiting to be written
        self.next_write = 0
        self.failed = None      # (seq, message) of the first batch that raised
        self.workers = {}
        self._numbers = iter(range(1 << 30))
        self._dir = tempfile.mkdtemp(prefix="trellis-stream-")
        self._start_failures = 0  # workers in a row that died unanswered

    # --- workers ----------------------------------------------------------

    def _spec_line(self):
        job = self.job
        spec = {"fn": pickle_callable(job.fn), "source_kind": job.source.kind,
                "read_csv": job.read_csv, "to_csv": job.to_csv}
        return base64.b64encode(cloudpickle.dumps(spec))

    def _start_worker(self, node, fork=False):
        """A worker on `node` (a Node: its daemon's socket and the argv
        prefix that runs a command there): forked from this process when
        `fork` (only before the coordinator connects; see _Forked), else a
        new `python3 -m trellis.stream._worker` through the prefix."""
        number = next(self._numbers)
        log_path = os.path.join(self._dir, f"worker-{number}.log")
        if fork:
            proc = _Forked(node.socket, log_path)
        else:
            argv = list(node.prefix) + ["/usr/bin/env", f"TRELLIS_SOCKET={node.socket}",
                                        f"PYTHONPATH={pythonpath()}", PY, "-m",
                                        "trellis.stream._worker"]
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=log)
        w = _Worker(number, node, proc, log_path, self._spec)
        self.workers[w.number] = w
        self.selector.register(w.fd, selectors.EVENT_READ, w)

    def _worker_died(self, w):
        self.selector.unregister(w.fd)
        del self.workers[w.number]
        w.stop()
        reason = _exit_reason(w.proc.returncode)
        self._start_failures = 0 if w.answered else self._start_failures + 1
        if self._start_failures >= MAX_START_FAILURES:
            raise JobFailed(f"workers keep dying before finishing a batch (the "
                            f"last {reason}); its stderr ends:\n{file_tail(w.log_path, 2048)}")
        # A worker answers in the order it was sent batches: the first one
        # it holds is the one it died on; the others only waited behind it
        # and go back to the queue without being charged an attempt.
        held = list(w.holding.values())
        if held:
            held[0].attempts += 1
            if held[0].attempts > self.job.retries:
                raise JobFailed(f"{held[0].describe()} failed: its worker "
                                f"{reason}, {held[0].attempts} time(s) "
                                f"(retries={self.job.retries})")
            self.stats["retries"] += 1
        for batch in reversed(held):
            self.queue.appendleft(batch)
        self.stats["worker_restarts"] += 1
        self._start_worker(w.node)

    # --- batches ------------------------------------------------------------

    def _batches(self):
        """Yields (payload, first_row, rows) from the source."""
        job = self.job
        items = job.source.items()
        if job.source.kind == "frames":
            row = 1
            for frame in items:
                yield frame, row, len(frame)
                row += len(frame)
            return
        header, rows, row, error = None, [], 1, None
        try:
            for line in items:
                if header is None:
                    header = line
                    continue
                rows.append(line)
                if len(rows) == job.rows:
                    yield self._text(header, rows), row, len(rows)
                    row += len(rows)
                    rows = []
        except SourceError as e:
            error = e
        if rows:  # also when the source failed: what was read is valid
            yield self._text(header, rows), row, len(rows)
        if error is not None:
            raise error

    @staticmethod
    def _text(header, rows):
        data = b"\n".join([header] + rows) + b"\n"
        return np.frombuffer(data, dtype=np.uint8)

    def _read_one(self):
        payload, first_row, rows = next(self._source)
        seq = self.stats["batches"]
        batch = _Batch(seq, int(self.client.put(payload)), first_row, rows)
        self.batches[seq] = batch
        self.queue.append(batch)
        self.stats["batches"] += 1
        self.stats["rows_in"] += rows
        if seq % 16 == 0:  # sampled: a Status round trip per 16 batches
            used = self.client.status()["used"]
            self.stats["arena_used_max"] = max(self.stats["arena_used_max"], used)

    def _accept(self, w, reply):
        w.answered = True
        batch = w.holding.pop(reply["seq"], None)
        if "error" in reply:
            # Fails the job once every batch before this one is written.
            seq = batch.seq if batch else reply["seq"]
            if self.failed is None or seq < self.failed[0]:
                self.failed = (seq, f"{batch.describe() if batch else seq}: the "
                                    f"function raised:\n{reply['error']}")
            return
        if batch is None or batch.seq in self.done or batch.seq < self.next_write:
            self._delete(reply["id"])  # a duplicate of a retried batch
            return
        self.done[batch.seq] = (reply["id"], reply["rows_out"], w.number)
        per_node = self.stats["batches_per_node"]
        per_node[w.node.socket] = per_node.get(w.node.socket, 0) + 1
        for key in ("fn_s", "parse_s", "encode_s", "store_s", "store_cpu_s"):
            self.stats[key] += reply[key]
        self.stats["worker_busy_s"] += reply["busy_s"]
        self._delete(batch.id)
        self._write_ready()

    def _write_ready(self):
        while self.next_write in self.done:
            oid, rows, number = self.done.pop(self.next_write)
            data = self.client.get(oid, fetch=True)
            self.job.sink_obj.write(memoryview(data))
            del data
            self._delete(oid)  # here: the result, or the copy fetched of it
            if trellis.ObjectID(oid).instance_id != self.here and number in self.workers:
                self.workers[number].drop(oid)  # the original, on its node
            del self.batches[self.next_write]
            self.next_write += 1
            self.stats["rows_out"] += rows

    def _delete(self, oid):
        delete_quietly(self.client, oid)

    def _dispatch(self, exhausted):
        """Hands queued batches to workers breadth first: each worker one
        before any gets a second (up to PREFETCH, so that the next is there
        when one finishes). Once the source is read and fewer batches wait
        than there are workers, only to workers with none: a last batch
        queued behind another's running one would wait while a worker
        idles."""
        for depth in range(1, PREFETCH + 1):
            for w in sorted(self.workers.values(), key=lambda w: len(w.holding)):
                if not self.queue:
                    return
                if depth > 1 and exhausted and len(self.queue) < len(self.workers):
                    return
                if len(w.holding) < depth:
                    w.send(self.queue.popleft())

    # --- the loop -----------------------------------------------------------

    def run(self):
        job = self.job
        t0 = time.perf_counter()
        self.selector = selectors.DefaultSelector()
        self._spec = self._spec_line()
        self._source = self._batches()
        source_error, exhausted = None, False
        last_progress, waited, t_loop, cpu_loop = 0.0, 0.0, t0, None
        try:
            if job.socket is None and not _daemon.serving(self.socket):
                # As trellis.connect would: an embedded daemon for this job.
                self._own_daemon = _daemon.launch(self.socket, exist_ok=True)
            nodes = job.nodes or [Node(self.socket, job.workers)]
            if job.fork and any(not n.prefix for n in nodes):
                import pandas  # noqa: F401 (loaded once, inherited by the forks)
            for node in nodes:
                for _ in range(node.workers):
                    self._start_worker(node, fork=job.fork and not node.prefix)
            self.client = trellis.connect(self.socket, start=False)
            self.here = self.client.status()["instance_id"]
            t_loop, cpu_loop = time.perf_counter(), time.process_time()
            self.stats["startup_s"] = t_loop - t0
            while True:
                if self.failed is not None:
                    if self.next_write >= self.failed[0]:
                        raise JobFailed(self.failed[1])
                    exhausted = True  # read no more; finish what is before it
                    self.queue = deque(b for b in self.queue if b.seq < self.failed[0])
                while not exhausted and len(self.batches) < job.max_in_flight:
                    try:
                        self._read_one()
                    except StopIteration:
                        exhausted = True
                    except SourceError as e:
                        source_error = e  # the rows before it are batched
                        continue
                in_flight = len(self.batches)
                self.stats["max_in_flight_seen"] = max(self.stats["max_in_flight_seen"],
                                                       in_flight)
                self._dispatch(exhausted)
                if exhausted and not self.batches:
                    break
                t_wait = time.perf_counter()
                ready = self.selector.select(timeout=1.0)
                waited += time.perf_counter() - t_wait
                for key, _ in ready:
                    w = key.data
                    replies = w.replies()
                    if replies is None:
                        self._worker_died(w)
                        continue
                    for reply in replies:
                        self._accept(w, reply)
                now = time.perf_counter()
                if self.progress and now - last_progress > 0.5:
                    self._show_progress(now - t0)
                    last_progress = now
        finally:
            t_end = time.perf_counter()
            if cpu_loop is not None:
                self.stats["coordinator_cpu_s"] = time.process_time() - cpu_loop
            for w in self.workers.values():  # they all wind down at once
                w.close_input()
            for w in list(self.workers.values()):
                w.stop()
                for reply in w.leftover_replies():  # results nobody will write
                    if "id" in reply and self.client is not None:
                        self._delete(reply["id"])
            if self.client is not None:
                for batch in self.batches.values():
                    self._delete(batch.id)
                for oid, _, _ in self.done.values():
                    self._delete(oid)
            job.source.close()
            job.sink_obj.close()
            self.selector.close()
            if self.client is not None:
                self.client.close()
            shutil.rmtree(self._dir, ignore_errors=True)
        self.stats["seconds"] = time.perf_counter() - t0
        # The coordinator's own time in the loop: everything but waiting for
        # replies (reading the source, puts, dispatch, writing the sink,
        # deletes); starting and stopping the workers is counted apart.
        # coordinator_cpu_s is the CPU it used there: the same work, without
        # the time other processes had the core.
        self.stats["coordinator_s"] = t_end - t_loop - waited
        self.stats["shutdown_s"] = self.stats["seconds"] - (t_end - t0)
        self.stats["rows_per_s"] = self.stats["rows_out"] / max(self.stats["seconds"], 1e-9)
        if self.progress:
            self._show_progress(self.stats["seconds"], end="\n")
        if source_error is not None:
            raise JobFailed(f"{job.source.describe()}: {source_error}; the "
                            f"{self.stats['rows_out']} rows before it were "
                            "classified and written") from source_error
        return self.stats

    def _show_progress(self, elapsed, end=""):
        s = self.stats
        done = self.job.source.fraction()
        bar = "" if done is None else f"[{'#' * int(done * 20):<20}] {done * 100:3.0f}% "
        sys.stderr.write(f"\r{bar}{s['rows_in']:,} rows in, {s['rows_out']:,} out, "
                         f"{s['rows_out'] / max(elapsed, 1e-9):,.0f} rows/s, "
                         f"{len(self.batches)} batches in flight{end}")
        sys.stderr.flush()
