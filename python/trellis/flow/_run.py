"""A run of a flow: schedules its steps on an executor, places each on the
node holding most of its input bytes, records what happened.

One scheduler thread per run. It starts every step whose upstream steps
succeeded (or were skipped by resume), asks the executor for the nodes and
for where the inputs live, and waits for steps to end. A failed or
cancelled step stops everything downstream of it ("not_run"); steps
already running elsewhere in the DAG finish. The run's record (run.json:
the steps' states, results and placement) is rewritten in the run's
directory at every change, so `clean(run_id)` and a resume find it."""

import json
import os
import tempfile
import threading
import time

import trellis
from trellis.flow._execute import CANCELLED, FAILED, SUCCEEDED

PENDING, RUNNING, SKIPPED, NOT_RUN = "pending", "running", "skipped", "not_run"
DONE_STATES = (SUCCEEDED, FAILED, CANCELLED, SKIPPED, NOT_RUN)


class StepFailed(trellis.TrellisError, RuntimeError):
    """A run ended without all its steps succeeding (the message names the
    step, its exit code and the tail of its stderr)."""


def runs_root():
    """Where runs keep their records and logs: $TRELLIS_FLOW_DIR, else
    <tmp>/trellis-flow-$UID."""
    return os.environ.get("TRELLIS_FLOW_DIR") or os.path.join(
        tempfile.gettempdir(), f"trellis-flow-{os.getuid()}")


def run_dir(run_id):
    return os.path.join(runs_root(), run_id)


def _new_run_id(flow):
    return f"{flow.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def make_executor(name, options):
    if name == "local":
        from trellis.flow._local import LocalExecutor
        return LocalExecutor(**options)
    if name == "dask":
        from trellis.flow._dask import DaskExecutor
        return DaskExecutor(**options)
    if name == "argo":
        raise trellis.InvalidArgument(
            "the argo executor has no cluster to submit to from here: "
            "write the workflow with flow.to_argo_yaml() and `argo submit` it")
    raise trellis.InvalidArgument(f"unknown executor {name!r} (local, dask, argo)")


def start_run(flow, run_id=None, *, executor="local", resume=False, keep=False,
              affinity=True, **options):
    """Starts running `flow` (see Flow.run); returns the Run at once."""
    order = flow.order()  # raises on a cycle before anything starts
    run_id = run_id or _new_run_id(flow)
    backend = make_executor(executor, options)
    run = Run(flow, run_id, backend, order, resume=resume, keep=keep,
              affinity=affinity)
    run._start()
    return run


class Run:
    """A running or finished flow run. Thread-safe."""

    def __init__(self, flow, run_id, backend, order, *, resume, keep, affinity):
        self.flow, self.id, self.executor = flow, run_id, backend
        self.dir = run_dir(run_id)
        self.keep, self.affinity, self.resume = keep, affinity, resume
        self._order = order
        self._lock = threading.Condition()
        self._save_lock = threading.Lock()
        self._steps = {s: {"state": PENDING} for s in order}
        self._cancel = False
        self._changed = False  # a step ended (or cancel) since the scheduler looked
        self._state = RUNNING
        self._cleanup = None
        self.started = time.time()
        self.ended = None
        self._thread = threading.Thread(target=self._schedule,
                                        name=f"trellis-flow-{run_id}",
                                        daemon=True)

    # --- what users call ------------------------------------------------

    @property
    def state(self):
        """running, succeeded, failed or cancelled."""
        with self._lock:
            return self._state

    def wait(self, timeout=None, check=True):
        """Blocks until the run ends (at most `timeout` seconds: then raises
        trellis.Timeout). Returns the final state; with `check`, raises
        StepFailed if it is not "succeeded"."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._state == RUNNING:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise trellis.Timeout(f"run {self.id!r} still running "
                                          f"after {timeout} s")
                self._lock.wait(left)
            state = self._state
        if check and state != SUCCEEDED:
            raise StepFailed(self.failure())
        return state

    def status(self):
        """Per step, in run order: {"state", "exit_code", "error",
        "stderr_tail", "node", "hostname", "wall_s", ...} (the fields a
        step has so far)."""
        with self._lock:
            return {s: dict(v) for s, v in self._steps.items()}

    def logs(self, step):
        """{"stdout": str, "stderr": str} of `step` (empty if it has not run)."""
        if step not in self._steps:
            raise trellis.InvalidArgument(f"run {self.id!r} has no step {step!r}")
        out = {}
        for stream in ("stdout", "stderr"):
            path = os.path.join(self.dir, f"{step}.{stream[3:]}")
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    out[stream] = f.read()
            except FileNotFoundError:
                out[stream] = ""
        return out

    def cancel(self):
        """Stops the run: running steps are terminated (SIGTERM, then
        SIGKILL), pending ones never start. Returns at once; wait() for the
        end."""
        with self._lock:
            self._cancel = self._changed = True
            self._lock.notify_all()
        self.executor.cancel(self.id)

    def placement(self):
        """Per step that ran: node, hostname, input bytes found on that
        node, input bytes elsewhere, bytes its daemon fetched meanwhile."""
        rows = []
        for step, s in self.status().items():
            if "node" not in s:
                continue
            rows.append({"step": step, "node": s["node"],
                         "hostname": s.get("hostname"),
                         "input_bytes_local": s.get("input_bytes_local", 0),
                         "input_bytes_remote": s.get("input_bytes_remote", 0),
                         "fetched_bytes": s.get("fetched_bytes", 0),
                         "wall_s": s.get("wall_s")})
        return rows

    def fetched_bytes(self):
        """Bytes the run's steps moved between nodes."""
        return sum(r["fetched_bytes"] for r in self.placement())

    def report(self):
        """What ran where, as lines of text."""
        lines = [f"run {self.id} ({self.executor.name}, affinity "
                 f"{'on' if self.affinity else 'off'}): {self.state}",
                 f"  {'step':<12} {'state':<10} {'node':>6}  {'host':<10} "
                 f"{'local MB':>9} {'remote MB':>9} {'fetched MB':>10} {'wall s':>7}"]
        for step, s in self.status().items():
            lines.append(
                f"  {step:<12} {s['state']:<10} {s.get('node', '-'):>6}  "
                f"{str(s.get('hostname', '-')):<10} "
                f"{s.get('input_bytes_local', 0) / 1e6:>9.1f} "
                f"{s.get('input_bytes_remote', 0) / 1e6:>9.1f} "
                f"{s.get('fetched_bytes', 0) / 1e6:>10.1f} "
                f"{s.get('wall_s') or 0:>7.2f}")
        return "\n".join(lines)

    def failure(self):
        """Why the run did not succeed, in words ("" if it did)."""
        with self._lock:
            if self._state == SUCCEEDED:
                return ""
            for step, s in self._steps.items():
                if s["state"] == FAILED:
                    tail = s.get("stderr_tail", "").strip()
                    return (f"run {self.id!r} failed: {s.get('error')}"
                            + (f"; stderr ends:\n{tail}" if tail else ""))
            return f"run {self.id!r} {self._state}"

    def __repr__(self):
        return f"Run({self.id!r}, {self.state})"

    # --- the scheduler ----------------------------------------------------

    def _start(self):
        os.makedirs(self.dir, exist_ok=True)
        if self.resume:
            self._skip_done_steps()
        self._save()
        self._thread.start()

    def _skip_done_steps(self):
        """Resume: a step whose outputs all exist is not run again."""
        for step in self._order:
            outputs = self.flow.steps[step].outputs
            if outputs and all(e is not None for e in self.executor.locate(outputs)):
                self._steps[step] = {"state": SKIPPED,
                                     "error": "outputs exist (resume)"}

    def _ready(self):
        """Pending steps whose upstream all succeeded; marks the ones that
        can no longer run. Called with the lock held."""
        ready = []
        for step in self._order:
            s = self._steps[step]
            if s["state"] != PENDING:
                continue
            ups = [self._steps[u] for u in self.flow.upstream(step)]
            broken = [u for u in self.flow.upstream(step)
                      if self._steps[u]["state"] in (FAILED, CANCELLED, NOT_RUN)]
            if broken:
                s.update(state=NOT_RUN,
                         error=f"not run: upstream step {broken[0]!r} "
                               f"{self._steps[broken[0]]['state']}")
            elif all(u["state"] in (SUCCEEDED, SKIPPED) for u in ups):
                ready.append(step)
        return ready

    def _schedule(self):
        try:
            self._loop()
        except BaseException as e:  # the executor broke: say so, end the run
            with self._lock:
                for s in self._steps.values():
                    if s["state"] in (PENDING, RUNNING):
                        s.update(state=FAILED, error=f"executor failed: {e!r}")
            self._finish()
            raise
        self._finish()

    def _loop(self):
        nodes = self.executor.nodes()
        turn = 0  # affinity off: round-robin over the nodes
        while True:
            with self._lock:
                if self._cancel:
                    for s in self._steps.values():
                        if s["state"] == PENDING:
                            s.update(state=CANCELLED, error="cancelled before it started")
                ready = self._ready()
                running = [s for s, v in self._steps.items() if v["state"] == RUNNING]
                if not ready and not running:
                    return
                for step in ready:
                    self._steps[step]["state"] = RUNNING
            for step in ready:
                if self.affinity:
                    node = self._place(step, nodes)
                else:
                    node, turn = nodes[turn % len(nodes)], turn + 1
                future = self.executor.submit(self.flow.steps[step].spec(), node,
                                              self.id, self.dir)
                future.add_done_callback(
                    lambda f, step=step: self._step_ended(step, f))
            if ready:
                self._save()
            with self._lock:  # until a step ends or cancel is asked
                while not self._changed:
                    self._lock.wait()
                self._changed = False

    def _place(self, step, nodes):
        """The node with most of `step`'s input bytes; ties (and steps
        without inputs) go to the node of an upstream step, else the first."""
        inputs = self.flow.steps[step].inputs
        weight = {n["node"]: 0 for n in nodes}
        for name, where in zip(inputs, self.executor.locate(inputs) if inputs else []):
            if where is None:
                continue
            parts = where.get("chunks") if where.get("global") else [where]
            for part in parts:
                if part.get("instance_id") in weight:
                    weight[part["instance_id"]] += self._size(name, part)
        best = max(weight.values(), default=0)
        upstream_nodes = [self._steps[u].get("node") for u in self.flow.upstream(step)]
        candidates = [n for n in nodes if weight[n["node"]] == best]
        for n in candidates:
            if n["node"] in upstream_nodes:
                return n
        return candidates[0]

    def _size(self, name, where):
        """Bytes of an input: what locate says, else what the step that
        made it recorded (an unpublished object on another node), else 1
        (its node still counts)."""
        if where.get("nbytes"):
            return where["nbytes"]
        with self._lock:
            for s in self._steps.values():
                for out in s.get("outputs", []):
                    if out["name"] == name and out.get("nbytes"):
                        return out["nbytes"]
        return 1

    def _step_ended(self, step, future):
        try:
            result = future.result()
        except BaseException as e:  # the executor could not run it at all
            result = {"status": FAILED, "error": f"step {step!r} could not be "
                      f"run: {type(e).__name__}: {e}", "stderr_tail": ""}
        self.executor.store_logs(self.dir, step, result)
        with self._lock:
            s = self._steps[step]
            s.update({k: v for k, v in result.items()
                      if k not in ("status", "stdout", "stderr")})
            s["state"] = result["status"]
            self._changed = True
            self._lock.notify_all()
        self._save()

    def _finish(self):
        with self._lock:
            states = [s["state"] for s in self._steps.values()]
            if all(s in (SUCCEEDED, SKIPPED) for s in states):
                state = SUCCEEDED
            elif FAILED in states:
                state = FAILED
            else:
                state = CANCELLED
        if state == SUCCEEDED and not self.keep:
            self._cleanup = clean_objects(self.executor, self.flow.intermediates())
        with self._lock:
            self._state, self.ended = state, time.time()
        self._save()
        self.executor.release()
        with self._lock:
            self._lock.notify_all()

    def record(self):
        """The run as plain data (what run.json holds)."""
        with self._lock:
            return {"run_id": self.id, "flow": self.flow.name,
                    "state": self._state, "started": self.started,
                    "ended": self.ended, "affinity": self.affinity,
                    "keep": self.keep, "executor": self.executor.describe(),
                    "order": self._order,
                    "intermediates": self.flow.intermediates(),
                    "outputs": [o for s in self.flow.steps.values() for o in s.outputs],
                    "cleanup": self._cleanup,
                    "steps": {s: dict(v) for s, v in self._steps.items()}}

    def _save(self):
        path = os.path.join(self.dir, "run.json")
        with self._save_lock:  # the scheduler and step callbacks both save
            with open(path + ".tmp", "w") as f:
                json.dump(self.record(), f, indent=1, default=str)
            os.replace(path + ".tmp", path)


def clean_objects(executor, names):
    """Deletes the objects bound to `names` on every node (and the names).
    Returns {"deleted": [names], "missing": [names]}."""
    found = executor.locate(names)
    ids = {n: w["id"] for n, w in zip(names, found) if w is not None}
    executor.delete_everywhere(list(ids.values()), list(ids))
    return {"deleted": sorted(ids), "missing": sorted(set(names) - set(ids))}


def clean(run_id, **options):
    """Deletes what run `run_id` left in the store (its intermediate
    objects, or all its outputs with all=True in options) and its record
    and logs. The executor is the one the run used (run.json says which;
    `options` are passed to it, e.g. dask=<scheduler address>). Returns
    what was deleted."""
    import shutil
    everything = options.pop("all", False)
    path = os.path.join(run_dir(run_id), "run.json")
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        raise trellis.ObjectNotFound(f"no run {run_id!r} in {runs_root()}") from None
    described = dict(record["executor"])
    name = described.pop("name")
    if name == "local":
        described["start"] = False  # a new daemon holds nothing of the run
    described.update(options)
    names = record["outputs"] if everything else record["intermediates"]
    try:
        backend = make_executor(name, described)
    except trellis.DaemonNotReachable:
        # The run's daemon is gone, and its objects with it.
        result = {"deleted": [], "missing": sorted(set(names))}
    else:
        try:
            result = clean_objects(backend, names)
        finally:
            backend.close()
    shutil.rmtree(run_dir(run_id), ignore_errors=True)
    return result
