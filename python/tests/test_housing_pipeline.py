"""End-to-end test of the housing pipeline (examples/housing) at a small size.

Starts a private trellisd on a unique socket, runs the driver against it
(--daemon external) through every exchange, and checks that

- every variant computed the same MSE,
- the driver removed what it put: no intermediate name is left in the store,
  the store holds no more memory than before, and the pickle files are gone;
- with --keep, the objects stay and can be read back from another process.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = os.path.join(REPO, "examples", "housing", "run_pipeline.py")
NAMES = ("x_train", "x_test", "y_train", "y_test", "model")
ROWS = 20_000

trellis = pytest.importorskip("trellis")


def _trellisd_binary():
    """build/bin/trellisd next to the imported package, else the repo's."""
    candidates = [os.environ.get("TRELLISD", "")]
    pkg_dir = os.path.dirname(os.path.abspath(trellis.__file__))
    candidates.append(os.path.join(pkg_dir, "..", "..", "bin", "trellisd"))
    candidates.append(os.path.join(REPO, "build", "bin", "trellisd"))
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    pytest.skip("no trellisd binary found (build the project first)")


@pytest.fixture
def daemon_socket(tmp_path, monkeypatch):
    """A private trellisd on a unique socket; stopped after the test."""
    socket = str(tmp_path / "trellis.sock")
    proc = subprocess.Popen([_trellisd_binary(), "--socket", socket,
                             "--size", "256M", "--log-level", "warn"])
    deadline = time.monotonic() + 30
    while not os.path.exists(socket):
        assert proc.poll() is None, "trellisd exited at start"
        assert time.monotonic() < deadline, "trellisd did not create its socket"
        time.sleep(0.02)
    monkeypatch.setenv("TRELLIS_SOCKET", socket)
    yield socket
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _run_driver(tmp_path, *extra):
    out = tmp_path / "results.json"
    cmd = [sys.executable, DRIVER, "--rows", str(ROWS), "--daemon", "external",
           "--workdir", str(tmp_path / "work"), "--json", str(out)] + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as f:
        return json.load(f), proc.stdout


def _names_in_store(client):
    return sorted(n for name in NAMES for n in client.list_names(name))


def _used_bytes(client):
    status = client.status()
    if isinstance(status, dict):
        return status.get("used", status.get("memory_used"))
    return getattr(status, "used", None)


def test_pipeline_agrees_and_cleans_up(tmp_path, daemon_socket):
    client = trellis.connect(daemon_socket)
    used_before = _used_bytes(client)

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
            trellis.get(name=name)
    if used_before is not None:
        assert _used_bytes(client) == used_before
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
    x_test = trellis.get(name="x_test")
    assert len(x_test) == rows
    assert "SalePrice" not in x_test.columns
    client = trellis.connect(daemon_socket)
    assert _names_in_store(client) == sorted(NAMES)
