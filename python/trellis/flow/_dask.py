"""The Dask executor: steps run as tasks of a real dask.distributed
cluster, one worker per trellis node.

Each worker finds its node from its own environment: TRELLIS_SOCKET names
the daemon of the machine it runs on. A step is submitted with a worker
restriction (workers=[that worker], no fallback) so it runs on the node the
run placed it on; the task starts the step process there (the same
_execute.execute as the local executor) and returns the result with the
logs' tails, which the driver writes to the run's directory. Where the
inputs live is asked of a worker's daemon (Locate reads the cluster
metadata), so the driver needs no daemon of its own. Cancel sets a
distributed Event that the running tasks poll."""

import os
import tempfile
import time

import distributed

import trellis
from trellis.flow._execute import execute, node_of
from trellis.flow._local import delete_here, locate_one

#: How often a running task asks the scheduler whether its run was cancelled.
CANCEL_POLL_S = 0.25


def _cancel_event_name(run_id):
    return f"trellis-flow-cancel-{run_id}"


# --- what runs on the workers (module functions: pickled by reference) -------

def _worker_socket():
    socket = os.environ.get("TRELLIS_SOCKET")
    if not socket:
        raise trellis.InvalidArgument(
            "this Dask worker has no TRELLIS_SOCKET: start it with the "
            "socket of its node's trellisd in its environment")
    return socket


def _worker_node():
    node, hostname = node_of(_worker_socket())
    return {"node": node, "hostname": hostname, "socket": _worker_socket()}


def _worker_locate(names):
    with trellis.connect(_worker_socket(), start=False) as client:
        return [locate_one(client, name) for name in names]


def _worker_delete(ids, names):
    with trellis.connect(_worker_socket(), start=False) as client:
        delete_here(client, ids, names)


def _worker_execute(spec, run_id):
    event = distributed.Event(_cancel_event_name(run_id))
    last = [0.0, False]

    def cancelled():
        now = time.monotonic()
        if now - last[0] >= CANCEL_POLL_S:
            last[0], last[1] = now, event.is_set()
        return last[1]

    log_dir = os.path.join(tempfile.gettempdir(),
                           f"trellis-flow-worker-{os.getuid()}", run_id)
    return execute(spec, socket=_worker_socket(), run_id=run_id,
                   log_dir=log_dir, cancelled=cancelled, return_logs=True)


# --- the driver's side ----------------------------------------------------------

class DaskExecutor:
    name = "dask"

    def __init__(self, dask=None, scheduler=None):
        """`dask`: a distributed.Client, or a scheduler address (also
        accepted as `scheduler`); default $DASK_SCHEDULER_ADDRESS."""
        dask = dask or scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
        if dask is None:
            raise trellis.InvalidArgument(
                "the dask executor needs a scheduler: flow.run(executor="
                "'dask', dask=<distributed.Client or address>)")
        self._own = not isinstance(dask, distributed.Client)
        self.client = distributed.Client(dask) if self._own else dask
        self.address = self.client.scheduler.address
        self._nodes = None

    def describe(self):
        return {"name": self.name, "scheduler": self.address}

    def nodes(self):
        """One entry per trellis node, with the worker that serves it."""
        if self._nodes is None:
            found = self.client.run(_worker_node)
            by_node = {}
            for worker, info in sorted(found.items()):
                by_node.setdefault(info["node"], dict(info, worker=worker))
            if not by_node:
                raise trellis.InvalidArgument(
                    f"the Dask cluster at {self.address} has no workers")
            self._nodes = [by_node[n] for n in sorted(by_node)]
        return self._nodes

    def locate(self, names):
        if not names:
            return []
        worker = self.nodes()[0]["worker"]
        return self.client.submit(_worker_locate, list(names), workers=[worker],
                                  pure=False).result()

    def submit(self, spec, node, run_id, run_dir):
        distributed.Event(_cancel_event_name(run_id), client=self.client)
        return self.client.submit(_worker_execute, spec, run_id,
                                  workers=[node["worker"]],
                                  allow_other_workers=False, pure=False,
                                  key=f"{run_id}-{spec['name']}-{time.time_ns()}")

    def cancel(self, run_id):
        distributed.Event(_cancel_event_name(run_id), client=self.client).set()

    def store_logs(self, run_dir, step, result):
        """Writes the logs the worker sent back into the run's directory
        (the worker's own copy stays on its machine)."""
        for stream, suffix in (("stdout", "out"), ("stderr", "err")):
            if stream in result:
                with open(os.path.join(run_dir, f"{step}.{suffix}"), "w") as f:
                    f.write(result[stream])
        result["stdout_path"] = os.path.join(run_dir, f"{step}.out")
        result["stderr_path"] = os.path.join(run_dir, f"{step}.err")

    def delete_everywhere(self, ids, names):
        """Every node deletes its copies (the maker's and fetched ones);
        the names are cluster-wide, dropped once."""
        self.client.run(_worker_delete, ids, [])
        worker = self.nodes()[0]["worker"]
        self.client.submit(_worker_delete, [], names, workers=[worker],
                           pure=False).result()

    def release(self):
        """A client this executor opened is closed when the run ends."""
        self.close()

    def close(self):
        if self._own:
            self.client.close()
