"""trellis.flow: chain pipeline steps, run each where its data is.

    from trellis.flow import Flow, Step
    flow = (Flow("housing")
            .process(Step("preprocess", script="preprocess.py", outputs=[...]))
            .process(Step("train", script="train.py", inputs=[...], outputs=["model"]))
            .process(Step("test", script="test.py", inputs=["model", ...])))
    run = flow.run(run_id="linear-regression")          # executor="local"
    run.wait()

A step is a Python callable, a Python script or a shell command with
declared input and output object names; each runs as a process of its own
with TRELLIS_SOCKET set to the daemon of the node it runs on. Executors,
chosen by one argument with the flow unchanged: "local" (processes here; a
daemon is started if none runs), "dask" (a dask.distributed cluster with
one worker per trellis node; each step runs on the node holding most of its
input bytes unless affinity=False), and Argo (``flow.to_argo_yaml()``).

Objects one step writes and another reads belong to the run: they are
deleted when it succeeds (unless keep=True) and kept when it fails, so that
``flow.run(run_id=..., resume=True)`` can go on from the failed step;
``clean(run_id)`` deletes them later."""

from trellis.flow._graph import Flow, Step
from trellis.flow._run import Run, StepFailed, clean, runs_root

__all__ = ["Flow", "Step", "Run", "StepFailed", "clean", "runs_root"]
