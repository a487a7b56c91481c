"""Processes exchanging objects by name; the embedded daemon; dying producers."""

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

import trellis
from conftest import run_python, spawn_python


def wait_until(predicate, timeout=30.0):
    """Polls `predicate` until true; False if it never became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_consumer_blocks_until_producer_puts(daemon):
    consumer = spawn_python(f"""
import trellis
with trellis.connect({daemon.socket!r}, start=False) as c:
    print("waiting", flush=True)
    df = c.get(name="step1", wait=True, timeout=60)
    print(len(df), int(df["a"].sum()), list(df.columns), df["s"].iloc[-1], flush=True)
""")
    assert consumer.stdout.readline().strip() == "waiting"
    with trellis.connect(daemon.socket, start=False) as client:
        # The consumer is blocked on the unbound name until we bind it.
        assert wait_until(lambda: client.status()["clients"] == 2)
        assert consumer.poll() is None
        frame = pd.DataFrame({"a": np.arange(1000), "s": [f"x{i}" for i in range(1000)]})
        client.put(frame, name="step1", persist=True)
    out, err = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, err
    assert out.split() == ["1000", str(sum(range(1000))), "['a',", "'s']", "x999"]


def test_get_name_wait_times_out(client):
    with pytest.raises(trellis.Timeout, match="later"):
        client.get(name="later", wait=True, timeout=0.05)
    with pytest.raises(TimeoutError):
        client.get_name("later", wait=True, timeout=0.05)


def test_embedded_daemon_starts_on_demand(tmp_socket_dir):
    socket = os.path.join(tmp_socket_dir, "embedded.sock")
    assert not trellis._daemon.serving(socket)
    out = run_python("""
import os, numpy as np, trellis
trellis.put(np.arange(5), name="x")            # the default client starts it
print(trellis.default_client().daemon.pid, int(trellis.get(name="x").sum()))
""", TRELLIS_SOCKET=socket, TRELLIS_SIZE="64M")
    pid, total = map(int, out.split())
    assert total == 10
    # The embedded daemon ended with the process that started it.
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
                      open(f"/proc/{pid}/stat").read().split()[2] == "Z")
    assert not trellis._daemon.serving(socket)


def test_detached_daemon_outlives_its_starter(tmp_socket_dir):
    socket = os.path.join(tmp_socket_dir, "detached.sock")
    run_python(f"""
import trellis
trellis.start_daemon({socket!r}, size="64M", detach=True)
with trellis.connect({socket!r}, start=False) as c:
    c.put("kept", name="k")
""")
    try:
        with trellis.connect(socket, start=False) as client:
            assert client.get(name="k") == "kept"
            assert client.status()["arena_size"] == 64 << 20
    finally:
        assert trellis.stop_daemon(socket)
    assert not trellis._daemon.serving(socket)
    assert not trellis.stop_daemon(socket)  # nothing left to stop


def _used(client):
    status = client.status()
    return status["used"], status["unsealed_blobs"]


@pytest.mark.parametrize("how", ["create_blob", "put"])
def test_killed_producer_leaves_no_bytes_behind(client, how):
    baseline = _used(client)
    if how == "create_blob":
        body = """
w = c.create_blob(64 << 20)
memoryview(w)[: 1 << 20] = b"x" * (1 << 20)
print("ready", flush=True)
"""
    else:  # killed between writing the blob and creating the object
        body = """
from trellis import _codec
write = _codec.Packer.write
def stall(self, writer):
    write(self, writer)
    print("ready", flush=True)
    time.sleep(600)
_codec.Packer.write = stall
c.put(pd.DataFrame({"a": np.arange(1 << 20), "b": np.ones(1 << 20)}), name="never")
"""
    producer = spawn_python(f"""
import time, numpy as np, pandas as pd, trellis
c = trellis.connect({client.socket!r}, start=False)
{body}
time.sleep(600)
""")
    try:
        assert producer.stdout.readline().strip() == "ready"
        assert _used(client)[0] > baseline[0]
        os.kill(producer.pid, signal.SIGKILL)
        producer.wait(30)
        assert wait_until(lambda: _used(client) == baseline)
        with pytest.raises(trellis.ObjectNotFound):
            client.get_name("never")
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()


def test_blocking_wait_releases_the_gil(daemon):
    """A thread blocked in get(name, wait=True) lets other threads run
    Python code (here: the put that unblocks it)."""
    import threading

    with trellis.connect(daemon.socket, start=False) as waiter, \
            trellis.connect(daemon.socket, start=False) as producer:
        result = {}
        thread = threading.Thread(
            target=lambda: result.update(value=waiter.get(name="t", wait=True, timeout=60)))
        thread.start()
        producer.put({"answer": np.arange(3)}, name="t")
        thread.join(60)
        assert not thread.is_alive()
        assert result["value"]["answer"].tolist() == [0, 1, 2]
