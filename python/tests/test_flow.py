"""trellis.flow with the local executor, against a real daemon: chains and
DAGs of the three step kinds, failures (exit code, stderr tail, dependents
not run), resume, cancel, the run's ownership of intermediate objects,
and bad flows rejected with the reason."""

import os
import subprocess
import textwrap
import time

import numpy as np
import pytest

import trellis
from trellis.flow import Flow, Step, StepFailed, clean

from conftest import python_env


@pytest.fixture
def env(daemon, tmp_path, monkeypatch):
    """The daemon's socket as TRELLIS_SOCKET, runs recorded under tmp_path."""
    monkeypatch.setenv("TRELLIS_SOCKET", daemon.socket)
    monkeypatch.setenv("TRELLIS_FLOW_DIR", str(tmp_path / "runs"))
    return tmp_path


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def make_table(n):
    import pandas as pd
    return pd.DataFrame({"x": np.arange(n, dtype=np.float64),
                         "y": np.arange(n, dtype=np.int64) * 2})


def add_column(table):
    table = table.copy()
    table["z"] = table["x"] + table["y"]
    return table


SUM_SCRIPT = """
    import sys, trellis
    table = trellis.get(name=sys.argv[1], fetch=True)
    trellis.put(float(table["z"].sum()), name=sys.argv[2])
    print("summed", len(table))
"""


def test_a_chain_of_the_three_step_kinds(env, client):
    summer = script(env, "sum.py", SUM_SCRIPT)
    flow = (Flow("chain")
            .process(Step("make", command="/usr/bin/python3 -c 'import trellis, numpy as np;"
                          " trellis.put(np.arange(1000), name=\"seed\")'",
                          outputs=["seed"]))
            .process(Step("table", lambda seed: make_table(len(seed)),
                          inputs=["seed"], outputs=["table"]))
            .process(Step("widen", add_column, inputs=["table"], outputs=["wide"]))
            .process(Step("sum", script=summer, args=["wide", "total"],
                          inputs=["wide"], outputs=["total"])))
    run = flow.run(run_id="chain-1")
    assert run.wait(60) == "succeeded"
    assert client.get(name="total") == float(sum(3 * i for i in range(1000)))
    status = run.status()
    assert list(status) == ["make", "table", "widen", "sum"]
    assert all(s["state"] == "succeeded" and s["exit_code"] == 0
               for s in status.values())
    assert run.logs("sum")["stdout"] == "summed 1000\n"
    # Ran in order, each after the one before ended.
    for before, after in zip(status, list(status)[1:]):
        assert status[after]["started"] >= status[before]["ended"]
    # Intermediates gone, the result stays.
    assert client.list_names("*") == {"total": client.get_name("total")}
    assert sorted(run.record()["cleanup"]["deleted"]) == ["seed", "table", "wide"]


def test_a_dag_fans_out_and_in(env, client):
    client.put(np.arange(10, dtype=np.int64), name="numbers")
    flow = (Flow("dag")
            .add(Step("evens", lambda a: a[a % 2 == 0].copy(), inputs=["numbers"],
                      outputs=["evens"]))
            .add(Step("odds", lambda a: a[a % 2 == 1].copy(), inputs=["numbers"],
                      outputs=["odds"]))
            .add(Step("slow", command="sleep 0.3"))
            .add(Step("join", lambda e, o: (int(e.sum()), int(o.sum())),
                      inputs=["evens", "odds"], outputs=["even-sum", "odd-sum"],
                      after=["slow"])))
    assert flow.upstream("join") == ["evens", "odds", "slow"]
    assert flow.intermediates() == ["evens", "odds"]
    assert flow.inputs() == ["numbers", "numbers"]
    run = flow.run(run_id="dag-1")
    run.wait(60)
    s = run.status()
    assert s["join"]["started"] >= max(s[p]["ended"] for p in ("evens", "odds", "slow"))
    # The three independent steps overlapped (2+ CPUs or not, they are
    # processes started together).
    assert s["evens"]["started"] < s["slow"]["ended"]
    assert (client.get(name="even-sum"), client.get(name="odd-sum")) == (20, 25)
    assert client.get(name="numbers") is not None  # inputs of the flow stay


def test_the_step_environment_names_the_socket_run_and_step(env, daemon, client):
    flow = Flow("envs").add(Step(
        "show", command='echo "$TRELLIS_SOCKET $TRELLIS_RUN_ID $TRELLIS_STEP $1 $GREETING"',
        args=["first-arg"], env={"GREETING": "hello"}))
    run = flow.run(run_id="env-run")
    run.wait(30)
    assert run.logs("show")["stdout"].split() == [
        daemon.socket, "env-run", "show", "first-arg", "hello"]


def test_a_failing_middle_step_stops_its_dependents_and_resume_runs_the_rest(env, client):
    counter = env / "first-ran"
    flag = env / "fixed"
    middle = script(env, "middle.py", f"""
        import os, sys, trellis
        x = trellis.get(name="a", fetch=True)
        if not os.path.exists({str(flag)!r}):
            sys.stderr.write("middle: the input looks wrong\\n" * 3)
            sys.exit(3)
        trellis.put(x + 1, name="b")
    """)
    flow = (Flow("resumable")
            .process(Step("first", command=f"echo run >> {counter}; /usr/bin/python3 -c "
                          "'import trellis; trellis.put(41, name=\"a\")'",
                          outputs=["a"]))
            .process(Step("middle", script=middle, inputs=["a"], outputs=["b"]))
            .process(Step("last", lambda b: b * 2, inputs=["b"], outputs=["c"])))
    run = flow.run(run_id="resume-me")
    with pytest.raises(StepFailed) as e:
        run.wait(60)
    assert "'middle' exited with status 3" in str(e.value)
    assert "the input looks wrong" in str(e.value)
    s = run.status()
    assert (s["first"]["state"], s["middle"]["state"], s["last"]["state"]) == (
        "succeeded", "failed", "not_run")
    assert s["middle"]["exit_code"] == 3
    assert s["middle"]["stderr_tail"].count("the input looks wrong") == 3
    assert "upstream step 'middle' failed" in s["last"]["error"]
    assert "exit_code" not in s["last"]
    assert run.state == "failed"
    assert client.get(name="a") == 41  # kept for debugging and resume

    flag.write_text("yes")
    again = flow.run(run_id="resume-me", resume=True)
    assert again.wait(60) == "succeeded"
    s = again.status()
    assert s["first"]["state"] == "skipped"
    assert (s["middle"]["state"], s["last"]["state"]) == ("succeeded", "succeeded")
    assert counter.read_text() == "run\n"  # the first step ran once in all
    assert client.get(name="c") == 84


def test_cancel_stops_the_running_step_and_the_rest(env, client):
    flow = (Flow("cancelled")
            .process(Step("sleepy", command="sleep 60"))
            .process(Step("never", command="true")))
    run = flow.run(run_id="cancel-me")
    deadline = time.monotonic() + 10
    while run.status()["sleepy"]["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # the process is started
    t0 = time.monotonic()
    run.cancel()
    assert run.wait(30, check=False) == "cancelled"
    assert time.monotonic() - t0 < 20  # SIGTERM, not the 60 s sleep
    s = run.status()
    assert s["sleepy"]["state"] == "cancelled"
    assert s["sleepy"]["exit_code"] == -15
    assert s["never"]["state"] in ("cancelled", "not_run")
    with pytest.raises(StepFailed, match="cancelled"):
        run.wait(1)


def test_wait_times_out_while_the_run_goes_on(env):
    run = Flow("slow").add(Step("nap", command="sleep 1")).run(run_id="slow-1")
    with pytest.raises(trellis.Timeout, match="still running"):
        run.wait(0.05)
    assert run.wait(30) == "succeeded"


def test_intermediates_are_kept_on_request_and_cleaned_later(env, client):
    flow = (Flow("kept")
            .process(Step("one", lambda: np.ones(100), outputs=["ones"]))
            .process(Step("two", lambda a: float(a.sum()), inputs=["ones"],
                          outputs=["sum"])))
    run = flow.run(run_id="kept-1", keep=True)
    run.wait(30)
    assert set(client.list_names("*")) == {"ones", "sum"}
    assert run.record()["cleanup"] is None
    assert clean("kept-1") == {"deleted": ["ones"], "missing": []}
    assert set(client.list_names("*")) == {"sum"}
    assert not os.path.exists(run.dir)
    with pytest.raises(trellis.ObjectNotFound, match="no run 'kept-1'"):
        clean("kept-1")


def test_a_step_that_does_not_make_its_outputs_fails(env):
    flow = Flow("liar").add(Step("liar", command="true", outputs=["promised"]))
    run = flow.run(run_id="liar-1")
    with pytest.raises(StepFailed, match=r"did not put its outputs \['promised'\]"):
        run.wait(30)
    bad = Flow("bad-return").add(Step("pair", lambda: 1, outputs=["a", "b"]))
    run = bad.run(run_id="bad-return-1")
    with pytest.raises(StepFailed, match="must return 2 values"):
        run.wait(30)


def test_a_callable_that_raises_fails_with_its_traceback(env):
    def broken():
        raise ValueError("no good input")

    run = Flow("raises").add(Step("broken", broken)).run(run_id="raises-1")
    assert run.wait(30, check=False) == "failed"
    s = run.status()["broken"]
    assert s["exit_code"] == 1
    assert "ValueError: no good input" in s["stderr_tail"]


def test_bad_flows_are_rejected_with_the_reason(env, tmp_path):
    with pytest.raises(trellis.InvalidArgument, match="exactly one of"):
        Step("two-kinds", len, command="true")
    with pytest.raises(trellis.InvalidArgument, match="exactly one of"):
        Step("no-kind")
    with pytest.raises(trellis.InvalidArgument, match="DNS label"):
        Step("Bad_Name", command="true")
    with pytest.raises(trellis.InvalidArgument, match="no script file"):
        Step("missing", script=str(tmp_path / "nope.py"))
    with pytest.raises(trellis.InvalidArgument, match="object names"):
        Step("empty", command="true", inputs=[""])
    flow = Flow("f").add(Step("a", command="true", outputs=["x"]))
    with pytest.raises(trellis.InvalidArgument, match="both write 'x'"):
        flow.add(Step("b", command="true", outputs=["x"]))
    with pytest.raises(trellis.InvalidArgument, match="two steps named"):
        flow.add(Step("a", command="true"))
    with pytest.raises(trellis.InvalidArgument, match="not in the flow"):
        flow.add(Step("c", command="true", after=["zzz"]))
    cyclic = (Flow("cycle").add(Step("p", command="true", inputs=["q-out"],
                                     outputs=["p-out"]))
              .add(Step("q", command="true", inputs=["p-out"], outputs=["q-out"])))
    with pytest.raises(trellis.InvalidArgument, match="cycle"):
        cyclic.run()
    with pytest.raises(trellis.InvalidArgument, match="unknown executor"):
        flow.run(executor="spark")
    with pytest.raises(trellis.InvalidArgument, match="to_argo_yaml"):
        flow.run(executor="argo")
    os.environ.pop("DASK_SCHEDULER_ADDRESS", None)
    with pytest.raises(trellis.InvalidArgument, match="needs a scheduler"):
        flow.run(executor="dask")


def test_the_local_executor_starts_a_daemon_if_none_runs(tmp_path):
    """A laptop with nothing running: the flow's first run brings up an
    embedded daemon on $TRELLIS_SOCKET, for as long as the driver lives."""
    socket = str(tmp_path / "fresh.sock")
    code = textwrap.dedent("""
        import trellis
        from trellis.flow import Flow, Step
        flow = (Flow("laptop")
                .process(Step("a", lambda: list(range(5)), outputs=["five"]))
                .process(Step("b", lambda x: sum(x), inputs=["five"], outputs=["ten"])))
        flow.run(run_id="laptop-1").wait(60)
        print(trellis.get(name="ten"), trellis.status()["objects"])
    """)
    out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                         timeout=120, env=python_env(TRELLIS_SOCKET=socket,
                                                     TRELLIS_FLOW_DIR=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "10"
    assert not trellis._daemon.serving(socket)  # it ended with the driver


def test_an_argo_export_pins_steps_where_a_run_placed_them(env):
    import socket as socket_module
    import yaml
    flow = (Flow("pinned")
            .process(Step("one", lambda: 1, outputs=["one"]))
            .process(Step("two", lambda x: x + 1, inputs=["one"], outputs=["two"])))
    run = flow.run(run_id="pinned-1")
    run.wait(30)
    doc = yaml.safe_load(flow.to_argo_yaml(placement=run))
    pinned = {t["name"]: t["affinity"]["nodeAffinity"]
              ["requiredDuringSchedulingIgnoredDuringExecution"]
              ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
              for t in doc["spec"]["templates"] if "affinity" in t}
    assert pinned == {"one": [socket_module.gethostname()],
                      "two": [socket_module.gethostname()]}


def test_clean_after_the_runs_daemon_is_gone_removes_the_record(env, start_daemon,
                                                                 monkeypatch):
    gone = start_daemon(name="gone")
    monkeypatch.setenv("TRELLIS_SOCKET", gone.socket)
    flow = (Flow("orphan")
            .process(Step("one", lambda: 1, outputs=["o1"]))
            .process(Step("two", lambda x: x, inputs=["o1"], outputs=["o2"])))
    run = flow.run(run_id="orphan-1", keep=True)
    run.wait(30)
    run.executor.close()
    gone.stop()
    assert clean("orphan-1") == {"deleted": [], "missing": ["o1"]}
    assert not os.path.exists(run.dir)
    assert not trellis._daemon.serving(gone.socket)  # clean started none
