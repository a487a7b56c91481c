"""The housing pipeline as a trellis flow: the seed's three steps,
preprocess -> train -> test, each its own script and process.

    flow = housing_flow("trellis", raw_path="housing.pkl", output="mse.txt")
    flow.run(run_id="linear-regression").wait()

With the trellis exchange the steps' objects are declared, so the flow
owns them (they are deleted when the run succeeds) and places each step on
the node holding its inputs; the raw table is a pickle file
(`raw_path`, as the seed's df.pkl) or an object already in the store
(`raw_object`, e.g. exported on another node). The pickle exchanges run the
same scripts in the same flow, handing data over in files the flow does
not see."""

import os

from trellis.flow import Flow, Step

from common import DATA_NAMES, MODEL_NAME

HERE = os.path.dirname(os.path.abspath(__file__))


#: A step that writes back dirty pages and empties the page cache (root).
DROP_CACHES = "sync; echo 3 > /proc/sys/vm/drop_caches"


def housing_flow(exchange, *, output, raw_path=None, raw_object=None,
                 exchange_dir=None, profile_prefix=None, drop_caches=False,
                 name=None):
    """The three-step flow for `exchange` (trellis, pickle-disk, pickle-shm).
    `output`: the file the test step appends the MSE to. `profile_prefix`:
    write each step's cProfile stats to <prefix><step>.prof. `drop_caches`:
    a step "drop-caches-<step>" before each step (root), so that reads of
    files hit the disk."""
    if (raw_path is None) == (raw_object is None):
        raise ValueError("give exactly one of raw_path and raw_object")
    declared = exchange == "trellis"  # pickle files are not store objects

    def step(script, extra, inputs=(), outputs=()):
        args = ["--exchange", exchange] + extra
        if exchange_dir:
            args += ["--exchange-dir", exchange_dir]
        if profile_prefix:
            args += ["--profile", f"{profile_prefix}{script}.prof"]
        return Step(script, script=os.path.join(HERE, script + ".py"), args=args,
                    inputs=list(inputs) if declared else [],
                    outputs=list(outputs) if declared else [])

    raw = (["--input", raw_path] if raw_path else ["--input-object", raw_object])
    steps = [step("preprocess", raw, inputs=[raw_object] if raw_object else [],
                  outputs=DATA_NAMES),
             step("train", [], inputs=["x_train", "y_train"], outputs=[MODEL_NAME]),
             step("test", ["--output", output],
                  inputs=["x_test", "y_test", MODEL_NAME])]
    flow = Flow(name or f"housing-{exchange}")
    for s in steps:
        if drop_caches:
            flow.process(Step(f"drop-caches-{s.name}", command=DROP_CACHES))
        flow.process(s)
    return flow
