"""End-to-end test of the housing pipeline (examples/housing) at a small size.

Uses a private trellisd on a unique socket, runs the driver against it
(--daemon external) through every exchange, and checks that

- every variant computed the same MSE,
- the driver removed what it put: no intermediate name is left in the store,
  the store holds no more memory than before, and the pickle files are gone;
- with --keep, the objects stay and can be read back from another process.
"""

import json
import os
import subprocess
import sys

import pytest

import trellis
from conftest import python_env

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = os.path.join(REPO, "examples", "housing", "run_pipeline.py")
NAMES = ("x_train", "x_test", "y_train", "y_test", "model")
ROWS = 20_000


@pytest.fixture
def daemon_socket(daemon, monkeypatch):
    """The socket of a private trellisd (conftest's `daemon` fixture: unique
    socket, stopped after the test), exported as TRELLIS_SOCKET for the
    driver and its steps."""
    monkeypatch.setenv("TRELLIS_SOCKET", daemon.socket)
    return daemon.socket


def _run_driver(tmp_path, *extra):
    out = tmp_path / "results.json"
    cmd = [sys.executable, DRIVER, "--rows", str(ROWS), "--daemon", "external",
           "--workdir", str(tmp_path / "work"), "--json", str(out)] + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=python_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as f:
        return json.load(f), proc.stdout


def _names_in_store(client):
    return sorted(n for name in NAMES for n in client.list_names(name))


def test_pipeline_agrees_and_cleans_up(tmp_path, daemon_socket):
    client = trellis.connect(daemon_socket, start=False)
    before = client.status()

    results, stdout = _run_driver(tmp_path)

    runs = results["runs"]
    assert sorted(r["exchange"] for r in runs) == ["pickle-disk", "pickle-shm", "trellis"]
    mses = {r["exchange"]: r["mse"] for r in runs}
    ref = mses["pickle-disk"]
    for exchange, mse in mses.items():
        assert mse == pytest.approx(ref, rel=1e-9), (exchange, mses)
    assert results["checks"]["mse_agree"]
    assert "| trellis | train |" in stdout  # the table was printed

    # Everything the pipeline put is gone: names, objects, memory, files.
    assert _names_in_store(client) == []
    for name in NAMES:
        with pytest.raises(KeyError):
            client.get(name=name)
    after = client.status()
    assert after["used"] == before["used"]
    assert after["objects"] == before["objects"]
    for r in runs:
        assert r["cleanup"]["kept"] is False
        assert r["cleanup"]["removed"] == len(NAMES)
        if r["exchange"] == "trellis":
            assert r["cleanup"]["names_left"] == []
    for directory in results["config"]["exchange_dirs"].values():
        if directory:
            assert not os.path.exists(directory) or os.listdir(directory) == []


def test_keep_leaves_objects_readable(tmp_path, daemon_socket):
    results, _ = _run_driver(tmp_path, "--exchanges", "trellis", "--keep")
    rows = results["runs"][0]["steps"]["preprocess"]["test_rows"]

    # Another process (this one) reads what the pipeline left behind.
    with trellis.connect(daemon_socket, start=False) as client:
        x_test = client.get(name="x_test")
        assert len(x_test) == rows
        assert "SalePrice" not in x_test.columns
        assert _names_in_store(client) == sorted(NAMES)
