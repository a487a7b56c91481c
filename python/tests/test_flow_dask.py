"""The dask executor on a real dask.distributed cluster: a scheduler and one
worker per trellis node, the nodes real test hosts (cluster_fixture:
network namespaces and a real etcd; loopback where namespaces cannot be
made, which it says). Steps are placed on the node holding their input
bytes; with affinity off the same flow moves bytes between nodes."""

import os

import numpy as np
import pytest

import trellis
from trellis.flow import Flow, Step
from cluster_fixture import make_cluster  # noqa: F401 (pytest fixture)
from test_fetch import connect, join
from factories import load_example

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))


def total(array):
    return int(array.sum())


def halve(array):
    return array[: len(array) // 2].copy()


@pytest.fixture
def two_nodes(make_cluster, tmp_path, monkeypatch):
    """(cluster, {k: daemon}, scheduler address, {k: instance id})."""
    monkeypatch.setenv("TRELLIS_FLOW_DIR", str(tmp_path / "runs"))
    c = make_cluster(2)
    daemons = {1: join(c, 1), 2: join(c, 2)}
    address = c.start_dask(daemons)
    ids = {}
    for k, d in daemons.items():
        with connect(d) as client:
            ids[k] = client.status()["instance_id"]
    return c, daemons, address, ids


def test_each_step_runs_on_the_node_that_holds_its_input(two_nodes):
    c, daemons, address, ids = two_nodes
    with connect(daemons[1]) as a, connect(daemons[2]) as b:
        a.put(np.ones(4 * MiB, dtype=np.uint8), name="on-a")
        b.put(np.ones(3 * MiB, dtype=np.uint8), name="on-b")
    flow = (Flow("placed")
            .add(Step("sum-a", total, inputs=["on-a"], outputs=["total-a"]))
            .add(Step("sum-b", total, inputs=["on-b"], outputs=["total-b"]))
            .add(Step("half-b", halve, inputs=["on-b"], outputs=["half"]))
            .add(Step("sum-half", total, inputs=["half"], outputs=["total-half"])))
    run = flow.run(run_id="placed-on", executor="dask", dask=address)
    assert run.wait(120) == "succeeded", run.report()
    status = run.status()
    assert status["sum-a"]["node"] == ids[1], run.report()
    for step in ("sum-b", "half-b", "sum-half"):
        assert status[step]["node"] == ids[2], run.report()
    assert run.fetched_bytes() == 0, run.report()
    assert status["sum-b"]["input_bytes_local"] >= 3 * MiB
    with connect(daemons[1]) as a:
        assert a.get(name="total-a") == 4 * MiB
        assert a.get(name="total-b", fetch=True) == 3 * MiB
        assert a.get(name="total-half", fetch=True) == 3 * MiB // 2
        # "half" was an intermediate: gone from every node once the run ended.
        with pytest.raises(trellis.ObjectNotFound):
            a.get_name("half")
    assert "placed-on" in run.report() and "affinity on" in run.report()


def test_affinity_off_moves_the_bytes_affinity_on_saves(two_nodes):
    c, daemons, address, ids = two_nodes
    with connect(daemons[2]) as b:
        b.put(np.ones(8 * MiB, dtype=np.uint8), name="big-on-b")
    # Two chained steps on a node each, whatever the order of the nodes.
    flow = (Flow("moved")
            .process(Step("first", halve, inputs=["big-on-b"], outputs=["h1"]))
            .process(Step("second", halve, inputs=["h1"], outputs=["h2"])))
    off = flow.run(run_id="moved-off", executor="dask", dask=address,
                   affinity=False)
    off.wait(120)
    nodes = [off.status()[s]["node"] for s in ("first", "second")]
    assert sorted(nodes) == sorted(ids.values()), off.report()
    assert off.fetched_bytes() >= 4 * MiB, off.report()
    on = flow.run(run_id="moved-on", executor="dask", dask=address)
    on.wait(120)
    assert [on.status()[s]["node"] for s in ("first", "second")] == [ids[2]] * 2
    assert on.fetched_bytes() == 0, on.report()


def test_a_failing_step_on_a_worker_reports_its_exit_code_and_stderr(two_nodes):
    c, daemons, address, ids = two_nodes
    flow = (Flow("fails")
            .process(Step("boom", command="echo going down >&2; exit 7"))
            .process(Step("after", command="true")))
    run = flow.run(run_id="fails", executor="dask", dask=address)
    assert run.wait(120, check=False) == "failed"
    s = run.status()
    assert s["boom"]["exit_code"] == 7
    assert "going down" in s["boom"]["stderr_tail"]
    assert "going down" in run.logs("boom")["stderr"]
    assert s["after"]["state"] == "not_run"


def test_the_housing_flow_moves_no_bytes_with_affinity_and_some_without(
        two_nodes, tmp_path):
    housing = os.path.join(os.path.dirname(os.path.dirname(HERE)),
                           "examples", "housing")
    generate = load_example(os.path.join(housing, "generate.py"), "housing_generate")
    housing_flow = load_example(os.path.join(housing, "flow.py"),
                                "housing_flow_module").housing_flow
    c, daemons, address, ids = two_nodes
    with connect(daemons[2]) as b:
        b.put(generate.generate(20_000, 0), name="raw", persist=True)
    mse = {}
    for affinity in (True, False):
        output = str(tmp_path / f"mse-{affinity}.txt")
        flow = housing_flow("trellis", raw_object="raw", output=output)
        run = flow.run(run_id=f"housing-{affinity}", executor="dask",
                       dask=address, affinity=affinity)
        run.wait(300)
        placed = {p["step"]: p for p in run.placement()}
        assert list(placed) == ["preprocess", "train", "test"]
        if affinity:
            assert {p["node"] for p in placed.values()} == {ids[2]}, run.report()
            assert run.fetched_bytes() == 0, run.report()
            assert placed["preprocess"]["input_bytes_local"] > 1 << 20
        else:
            assert run.fetched_bytes() > 1 << 20, run.report()
            assert placed["preprocess"]["node"] != placed["train"]["node"]
        mse[affinity] = float(open(output).read())
        # The intermediates are gone from both nodes, the raw table stays.
        with connect(daemons[1]) as a:
            assert set(a.list_names("*")) == {"raw"}
    assert mse[True] == mse[False]


def test_cancel_stops_a_step_running_on_a_worker(two_nodes):
    import time
    c, daemons, address, ids = two_nodes
    flow = (Flow("cancel-dask")
            .process(Step("sleepy", command="sleep 60"))
            .process(Step("never", command="true")))
    run = flow.run(run_id="cancel-dask", executor="dask", dask=address)
    deadline = time.monotonic() + 30
    while run.status()["sleepy"]["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # the task has started the step process on its worker
    t0 = time.monotonic()
    run.cancel()
    assert run.wait(30, check=False) == "cancelled"
    assert time.monotonic() - t0 < 20  # SIGTERM, not the 60 s sleep
    s = run.status()
    assert s["sleepy"]["state"] == "cancelled"
    assert s["never"]["state"] in ("cancelled", "not_run")
