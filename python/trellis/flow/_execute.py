"""Runs one step as a process next to one daemon, and says what it did.

The same function serves every executor: the local one calls it in a
thread of the driver, the Dask one in a task on the worker of the chosen
node. It needs only the step's spec (plain data), the daemon's socket and
a directory for the step's logs and files."""

import os
import select
import signal
import socket as socket_module
import subprocess
import sys
import time

import cloudpickle

import trellis
from trellis._shipping import file_tail, pythonpath

PYTHON = "/usr/bin/python3"
#: How much of a step's stderr its status quotes.
STDERR_TAIL_BYTES = 2048
#: How much of each log a result carries back (for a driver on another
#: machine; a local driver reads the files).
LOG_TAIL_BYTES = 1 << 20
#: After SIGTERM, how long a cancelled step has before SIGKILL.
TERM_GRACE_S = 3.0

SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"


def command_for(spec, callable_args, python=PYTHON):
    """argv of the process of step `spec`; a callable step's process is
    trellis.flow._callable with `callable_args` (where its spec is)."""
    kind = spec["kind"]
    if kind == "callable":
        return [python, "-m", "trellis.flow._callable"] + list(callable_args)
    if kind == "script":
        return [python, spec["script"]] + spec["args"]
    # The step's name is $0 of the command, its args $1...
    return ["/bin/sh", "-c", spec["command"], spec["name"]] + spec["args"]


def step_command(spec, log_dir):
    """argv of the step process for `spec` (writes a callable's spec file)."""
    if spec["kind"] != "callable":
        return command_for(spec, [])
    path = os.path.join(log_dir, spec["name"] + ".spec")
    with open(path, "wb") as f:
        cloudpickle.dump(spec, f)
    return command_for(spec, [path])


def step_env(spec, socket, run_id):
    """The environment of the step process: ours, the step's own, and where
    its daemon is; the trellis package importable as it is here."""
    env = dict(os.environ)
    env.update(spec["env"])
    env["PYTHONPATH"] = pythonpath(env.get("PYTHONPATH"))
    env.update(TRELLIS_SOCKET=socket, TRELLIS_RUN_ID=run_id,
               TRELLIS_STEP=spec["name"])
    return env


def _sizes(client, names):
    """[{name, id, nbytes, here, instance_id}] of the objects bound to
    `names` that exist (a missing one is left out)."""
    out = []
    for name in names:
        try:
            [where] = client.locate([name])
        except trellis.ObjectNotFound:
            continue
        out.append({"name": name, "id": where["id"],
                    "nbytes": where.get("nbytes"), "here": where["here"],
                    "instance_id": where["instance_id"]})
    return out


def _stop(proc):
    """SIGTERM the step's process group, SIGKILL after the grace period."""
    for sig, wait in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_or_cancel(proc, cancelled, poll_s):
    """Waits for `proc` to exit, noticing at once (a pidfd becomes readable
    when the process ends, so no step pays a polling delay), and asks
    `cancelled()` every `poll_s` seconds meanwhile; stops the process if it
    says so. Returns whether it did."""
    pidfd = os.pidfd_open(proc.pid)
    try:
        while proc.poll() is None:
            if cancelled():
                _stop(proc)
                return True
            select.select([pidfd], [], [], poll_s)
    finally:
        os.close(pidfd)
    return False


def execute(spec, *, socket, run_id, log_dir, cancelled=lambda: False,
            return_logs=False, poll_s=0.1):
    """Runs the step `spec` against the daemon at `socket`; blocks until it
    ends or `cancelled()` turns true (then it is stopped). Returns a result
    dict: status (succeeded/failed/cancelled), exit_code, error (what failed,
    in words), stderr_tail, node (the daemon's instance id), hostname,
    started/ended (epoch seconds), wall_s, inputs (their ids, sizes and
    whether each was here when the step started), input_bytes_local,
    input_bytes_remote, fetched_bytes (what this node's daemon fetched
    while the step ran: exact when no other step runs on the node at the
    same time), outputs (ids and sizes), and the log paths; with
    `return_logs`, the logs' tails too."""
    os.makedirs(log_dir, exist_ok=True)
    name = spec["name"]
    out_path = os.path.join(log_dir, name + ".out")
    err_path = os.path.join(log_dir, name + ".err")
    result = {"step": name, "hostname": socket_module.gethostname(),
              "stdout_path": out_path, "stderr_path": err_path,
              "exit_code": None, "error": None, "stderr_tail": ""}
    with trellis.connect(socket, start=False) as client:
        status0 = client.status()
        result["node"] = status0["instance_id"]
        inputs = _sizes(client, spec["inputs"])
        result["inputs"] = inputs
        result["input_bytes_local"] = sum(i["nbytes"] or 0 for i in inputs
                                          if i["here"])
        result["input_bytes_remote"] = sum(i["nbytes"] or 0 for i in inputs
                                           if not i["here"])
        argv = step_command(spec, log_dir)
        result["started"] = time.time()
        t0 = time.perf_counter()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL,
                                    env=step_env(spec, socket, run_id),
                                    start_new_session=True)
        stopped = _wait_or_cancel(proc, cancelled, poll_s)
        result["wall_s"] = time.perf_counter() - t0
        result["ended"] = time.time()
        result["exit_code"] = proc.returncode
        result["fetched_bytes"] = (client.status()["fetch_bytes_total"] -
                                   status0["fetch_bytes_total"])
        result["outputs"] = _sizes(client, spec["outputs"])
    result["stderr_tail"] = file_tail(err_path, STDERR_TAIL_BYTES)
    if stopped:
        result["status"], result["error"] = CANCELLED, "cancelled"
    elif proc.returncode != 0:
        result["status"] = FAILED
        result["error"] = (f"step {name!r} exited with status "
                           f"{proc.returncode}" if proc.returncode > 0 else
                           f"step {name!r} was killed by signal "
                           f"{-proc.returncode}")
    else:
        made = {o["name"] for o in result["outputs"]}
        missing = [o for o in spec["outputs"] if o not in made]
        result["status"] = FAILED if missing else SUCCEEDED
        if missing:
            result["error"] = (f"step {name!r} exited 0 but did not put "
                               f"its outputs {missing}")
    if return_logs:
        result["stdout"] = file_tail(out_path, LOG_TAIL_BYTES)
        result["stderr"] = file_tail(err_path, LOG_TAIL_BYTES)
    return result


def node_of(socket):
    """(instance_id, hostname) of the daemon at `socket`."""
    with trellis.connect(socket, start=False) as client:
        return client.status()["instance_id"], socket_module.gethostname()


if __name__ == "__main__":
    sys.exit("trellis.flow._execute is a library; see trellis.flow")
