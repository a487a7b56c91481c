"""Steps and flows: what runs, what it reads and writes, in which order.

Nothing here starts a process; _run.py does, through an executor."""

import os
import re

from trellis import InvalidArgument
from trellis._shipping import pickle_callable

#: Step names become file names, Dask keys and Kubernetes names: keep them
#: DNS-1123 labels.
_STEP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

CALLABLE, SCRIPT, SHELL = "callable", "script", "shell"


class Step:
    """One pipeline step, run as a process of its own.

    Exactly one of:
      fn       a Python callable. The step process gets each input by name
               (fetch=True) and calls fn(*input_values); the return value
               is put under the outputs (one output: the value; several: a
               tuple/list in order or a dict by output name).
      script   a Python file, run as ``/usr/bin/python3 script *args``.
      command  a shell command, run by ``/bin/sh -c``.
    `inputs` and `outputs` are object names. Script and shell steps read
    and write them themselves (trellis.get(name=..., fetch=True) /
    trellis.put(..., name=...)); the flow checks that the outputs exist
    when the step exits 0. `env` is added to the step's environment
    (TRELLIS_SOCKET, TRELLIS_RUN_ID and TRELLIS_STEP are always set).
    `after`: names of steps that must succeed first, beyond the ones whose
    outputs this step reads (those are found from the names)."""

    def __init__(self, name, fn=None, *, script=None, command=None,
                 inputs=(), outputs=(), args=(), env=None, after=()):
        kinds = [k for k, v in ((CALLABLE, fn), (SCRIPT, script),
                                (SHELL, command)) if v is not None]
        if len(kinds) != 1:
            raise InvalidArgument(f"step {name!r}: give exactly one of fn, "
                                  f"script or command (got {kinds or 'none'})")
        if not isinstance(name, str) or not _STEP_NAME.match(name):
            raise InvalidArgument(
                f"step name {name!r}: use lower-case letters, digits and '-' "
                "(a DNS label: it names files, Dask tasks and Argo templates)")
        self.name = name
        self.kind = kinds[0]
        self.fn = fn
        self.script = os.path.abspath(script) if script is not None else None
        self.command = command
        if self.kind == CALLABLE and not callable(fn):
            raise InvalidArgument(f"step {name!r}: fn is not callable")
        if self.kind == SCRIPT and not os.path.isfile(self.script):
            raise InvalidArgument(f"step {name!r}: no script file {script!r}")
        if self.kind == SHELL and not isinstance(command, str):
            raise InvalidArgument(f"step {name!r}: command must be a string")
        self.inputs = _names(name, "inputs", inputs)
        self.outputs = _names(name, "outputs", outputs)
        self.args = [str(a) for a in args]
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.after = list(after)

    def spec(self):
        """What a step process needs, as plain data that pickles small and
        travels to a Dask worker: the callable as cloudpickle bytes."""
        return {"name": self.name, "kind": self.kind,
                "fn": pickle_callable(self.fn) if self.fn else None,
                "script": self.script, "command": self.command,
                "inputs": self.inputs, "outputs": self.outputs,
                "args": self.args, "env": self.env}

    def __repr__(self):
        what = {CALLABLE: getattr(self.fn, "__name__", "fn"),
                SCRIPT: self.script, SHELL: self.command}[self.kind]
        return (f"Step({self.name!r}, {self.kind}={what!r}, "
                f"inputs={self.inputs}, outputs={self.outputs})")


def _names(step, what, names):
    if isinstance(names, str):
        names = [names]
    names = list(names)
    for n in names:
        if not isinstance(n, str) or not n:
            raise InvalidArgument(f"step {step!r}: {what} must be object "
                                  f"names (non-empty strings), got {n!r}")
    if len(set(names)) != len(names):
        raise InvalidArgument(f"step {step!r}: {what} name an object twice")
    return names


class Flow:
    """A DAG of steps. ``Flow(name).process(a).process(b)`` chains (b after
    a, as the seeds' DataFlow does); ``add(step)`` adds a step ordered only
    by its data (inputs made by other steps) and `after`, for fan-out and
    fan-in. Edges come from names: a step reading an object another step
    writes runs after it. Each object is written by one step at most."""

    def __init__(self, name):
        if not isinstance(name, str) or not _STEP_NAME.match(name):
            raise InvalidArgument(f"flow name {name!r}: use lower-case "
                                  "letters, digits and '-'")
        self.name = name
        self.steps = {}  # name -> Step, in the order added
        self._last = None

    def add(self, step):
        """Adds `step`; returns self."""
        if not isinstance(step, Step):
            raise InvalidArgument(f"flow {self.name!r}: add takes a Step, "
                                  f"got {type(step).__name__}")
        if step.name in self.steps:
            raise InvalidArgument(f"flow {self.name!r}: two steps named "
                                  f"{step.name!r}")
        for out in step.outputs:
            maker = self.producer(out)
            if maker:
                raise InvalidArgument(f"flow {self.name!r}: steps {maker!r} "
                                      f"and {step.name!r} both write {out!r}")
        for dep in step.after:
            if dep not in self.steps:
                raise InvalidArgument(f"step {step.name!r}: after names "
                                      f"{dep!r}, which is not in the flow")
        self.steps[step.name] = step
        self._last = step.name
        return self

    def process(self, step):
        """Adds `step` after the step added last (a chain); returns self."""
        if self._last and self._last not in step.after:
            step.after = step.after + [self._last]
        return self.add(step)

    def producer(self, name):
        """The step that writes object `name`, or None (an input of the
        flow, made before it runs)."""
        for s in self.steps.values():
            if name in s.outputs:
                return s.name
        return None

    def upstream(self, step_name):
        """Names of the steps `step_name` waits for, in the order added."""
        step = self.steps[step_name]
        deps = set(step.after)
        deps.update(p for p in map(self.producer, step.inputs) if p)
        return [s for s in self.steps if s in deps]

    def downstream(self, step_name):
        """Every step that (transitively) waits for `step_name`."""
        out, frontier = set(), {step_name}
        while frontier:
            frontier = {s for s in self.steps
                        if s not in out and frontier & set(self.upstream(s))}
            out |= frontier
        return [s for s in self.steps if s in out]

    def order(self):
        """The steps in an order that respects every edge (stable: the order
        added where edges allow). Raises InvalidArgument on a cycle, which
        `after` alone cannot make but data edges can (a step reading what a
        later step writes)."""
        done, order = set(), []
        while len(order) < len(self.steps):
            ready = [s for s in self.steps if s not in done
                     and set(self.upstream(s)) <= done]
            if not ready:
                stuck = [s for s in self.steps if s not in done]
                raise InvalidArgument(f"flow {self.name!r}: steps {stuck} "
                                      "wait for each other (a cycle)")
            order.append(ready[0])
            done.add(ready[0])
        return order

    def inputs(self):
        """Objects the flow reads but no step writes (made before it runs)."""
        return [n for s in self.steps.values() for n in s.inputs
                if self.producer(n) is None]

    def intermediates(self):
        """Objects one step writes and another reads: owned by a run, and
        removed when it succeeds unless kept. Outputs nobody reads are the
        flow's results and stay."""
        read = {n for s in self.steps.values() for n in s.inputs}
        return [n for s in self.steps.values() for n in s.outputs if n in read]

    def run(self, run_id=None, *, executor="local", resume=False, keep=False,
            affinity=True, **options):
        """Starts a run and returns its Run (see trellis.flow._run.Run)."""
        from trellis.flow._run import start_run
        return start_run(self, run_id, executor=executor, resume=resume,
                         keep=keep, affinity=affinity, **options)

    def to_argo_yaml(self, **options):
        """The flow as an Argo Workflow (see trellis.flow._argo). The
        `placement` option may also be a Run of this flow: each step is then
        pinned to the host it ran on (where its data was)."""
        from trellis.flow._argo import to_argo_yaml
        placement = options.get("placement")
        if hasattr(placement, "placement") and callable(placement.placement):
            options["placement"] = {p["step"]: p["hostname"]
                                    for p in placement.placement()
                                    if p.get("hostname")}
        return to_argo_yaml(self, **options)

    def __repr__(self):
        return f"Flow({self.name!r}, steps={list(self.steps)})"
