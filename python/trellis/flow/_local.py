"""The local executor: steps are processes on this machine, next to the
daemon at $TRELLIS_SOCKET (or the default socket); if none serves it, an
embedded daemon is started there that lives as long as this process. One
machine is a cluster of one node, so placement has one choice."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import trellis
from trellis._shipping import delete_quietly
from trellis.flow._execute import execute, node_of


class LocalExecutor:
    name = "local"

    def __init__(self, socket=None, size=None, parallel=None, start=True):
        """`socket`: the daemon's (default $TRELLIS_SOCKET, else the
        default); `size`: arena of an embedded daemon if one is started
        (`start`; else DaemonNotReachable if none serves the socket);
        `parallel`: steps at once (default: the CPU count)."""
        self.socket = socket or trellis.default_socket()
        self._client = trellis.connect(self.socket, size=size, start=start)
        self._pool = ThreadPoolExecutor(max_workers=parallel or os.cpu_count() or 1,
                                        thread_name_prefix="trellis-step")
        self._cancelled = {}  # run id -> threading.Event

    def describe(self):
        return {"name": self.name, "socket": self.socket}

    def nodes(self):
        node, hostname = node_of(self.socket)
        return [{"node": node, "hostname": hostname}]

    def locate(self, names):
        return [locate_one(self._client, n) for n in names]

    def submit(self, spec, node, run_id, run_dir):
        event = self._cancelled.setdefault(run_id, threading.Event())
        return self._pool.submit(execute, spec, socket=self.socket,
                                 run_id=run_id, log_dir=run_dir,
                                 cancelled=event.is_set)

    def cancel(self, run_id):
        self._cancelled.setdefault(run_id, threading.Event()).set()

    def store_logs(self, run_dir, step, result):
        """The logs are already in run_dir (the step wrote them there)."""

    def delete_everywhere(self, ids, names):
        delete_here(self._client, ids, names)

    def release(self):
        """Nothing: the daemon (maybe embedded) must outlive the run."""

    def close(self):
        self._pool.shutdown(wait=False)
        self._client.close()


def locate_one(client, name):
    """Where object `name` lives (Client.locate), or None if nobody has it."""
    try:
        return client.locate([name])[0]
    except trellis.ObjectNotFound:
        return None


def delete_here(client, ids, names):
    """Deletes the objects among `ids` this client's daemon holds and drops
    `names`; ones already gone are skipped."""
    for oid in ids:
        delete_quietly(client, oid)
    for name in names:
        try:
            client.drop_name(name)
        except trellis.ObjectNotFound:
            pass


