"""Memory pressure from Python: spilling, reloading, pin/unpin/evict,
memory_trim, and OutOfMemory that explains itself."""

import os
import time

import numpy as np
import pandas as pd
import pytest

import trellis


@pytest.fixture
def spill_client(start_daemon, tmp_socket_dir):
    spill_dir = os.path.join(tmp_socket_dir, "spill")
    daemon = start_daemon(size="32M", spill_dir=spill_dir)
    with trellis.connect(daemon.socket, start=False) as c:
        yield c, spill_dir


def frame(seed, rows=40_000):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f"c{i}": rng.integers(0, 1 << 40, rows) for i in range(8)})


def test_three_times_the_arena_of_dataframes_round_trips(spill_client):
    client, spill_dir = spill_client
    ids = [client.put(frame(i), name=f"df_{i}") for i in range(40)]  # ~100 MB
    status = client.status()
    assert status["spilled_blobs"] > 0
    assert status["spill_count"] > 0
    # Background spills and file deletes finish on worker threads: once the
    # daemon is idle, there is one file per spilled blob.
    deadline = time.monotonic() + 10
    while (len(os.listdir(spill_dir)) != client.status()["spilled_blobs"]
           and time.monotonic() < deadline):
        time.sleep(0.01)
    assert len(os.listdir(spill_dir)) == client.status()["spilled_blobs"]
    for i, oid in enumerate(ids):
        got = client.get(name=f"df_{i}")
        pd.testing.assert_frame_equal(got, frame(i))
        del got  # release, so it can be spilled again
    assert client.status()["reload_count"] > 0


def test_evict_pin_unpin(spill_client):
    client, spill_dir = spill_client
    a = client.put(np.arange(1 << 20, dtype=np.int64))
    assert client.evict(a) == 8 << 20
    assert client.status()["spilled_bytes"] == 8 << 20
    assert len(os.listdir(spill_dir)) == 1
    client.pin(a)  # reloads it
    assert client.status()["spilled_bytes"] == 0
    with pytest.raises(trellis.InvalidArgument, match="pinned"):
        client.evict(a)
    client.unpin(a)
    held = client.get(a)
    with pytest.raises(trellis.InvalidArgument, match="held by 1 reader"):
        client.evict(a)
    np.testing.assert_array_equal(held, np.arange(1 << 20, dtype=np.int64))
    del held
    client.evict(a)
    client.delete(a)
    # The daemon deletes the file on a worker thread, just after replying.
    deadline = time.monotonic() + 10
    while os.listdir(spill_dir) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert os.listdir(spill_dir) == []


def test_out_of_memory_when_everything_is_held(spill_client):
    client, _ = spill_client
    held = [client.get(client.put(np.ones(6 << 20, dtype=np.uint8))) for _ in range(4)]
    with pytest.raises(MemoryError) as info:
        client.put(np.zeros(16 << 20, dtype=np.uint8))
    message = str(info.value)
    assert "cannot allocate" in message
    assert "held by live readers" in message
    assert all(int(h.sum()) == 6 << 20 for h in held)  # nothing was touched


def test_status_and_memory_trim(start_daemon):
    daemon = start_daemon(size="64M", reserve=True)
    with trellis.connect(daemon.socket, start=False) as client:
        status = client.status()
        for key in ("arena_size", "used", "free", "held_bytes", "spilled_bytes",
                    "spilled_blobs", "spill_count", "reload_count",
                    "spill_bytes_total", "reload_bytes_total", "spill_enabled"):
            assert key in status, key
        assert status["spill_enabled"] is False
        oid = client.put(np.zeros(8 << 20, dtype=np.uint8))
        client.delete(oid)
        assert client.memory_trim() > 32 << 20
        assert client.status()["arena_resident_bytes"] < 8 << 20
