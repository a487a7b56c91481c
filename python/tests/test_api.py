"""The client surface: ids, names, metadata, blobs, lifecycle, module-level
calls and round trips per call."""

import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import trellis
from conftest import python_env


def test_object_id_text_round_trip(client):
    oid = client.put(1)
    text = str(oid)
    assert len(text) == 17 and text[0] == "o" and int(text[1:], 16) == int(oid)
    assert trellis.ObjectID(text) == oid and hash(trellis.ObjectID(text)) == hash(oid)
    assert repr(oid) == f"ObjectID('{text}')"
    assert pickle.loads(pickle.dumps(oid)) == oid
    assert client.get(text) == 1  # ids may be given as text


def test_names(client):
    a, b = client.put("a"), client.put("b")
    client.put_name(a, "x_train")
    client.put_name(b, "x_test")
    client.put_name(b, "y_test")
    assert client.get_name("x_train") == a
    assert client.list_names("x_*") == {"x_train": a, "x_test": b}
    client.drop_name("x_test")
    assert client.list_names() == {"x_train": a, "y_test": b}
    assert client.get(name="y_test", wait=True, timeout=1) == "b"


def test_get_meta_and_list_objects(client):
    frame = pd.DataFrame({"a": np.arange(3), "s": ["x", "y", "z"]})
    oid = client.put(frame)
    meta = client.get_meta(oid)
    assert meta.id == oid and meta["typename"] == "trellis::DataFrame"
    assert meta.fields["columns"] == ["a", "s"] and meta["fields"]["num_rows"] == 3
    assert meta.member("column_1").typename == "trellis::StringColumn"
    tensor = meta["members"]["column_0"]
    assert tensor["fields"]["dtype"] == "<i8"
    blob = tensor.member("buffer").blob()
    assert blob.address in client.arena and meta.nbytes >= 24
    with pytest.raises(trellis.ObjectNotFound, match="nope"):
        meta.member("nope")
    listed = client.list_objects("trellis::Data*")
    assert [m.id for m in listed] == [oid]
    assert listed[0].typename == "trellis::DataFrame"


def test_persist_and_delete(client):
    oid = client.put(np.arange(1000), name="arr")
    client.persist(oid)
    used = client.status()["used"]
    assert used > 0
    deleted = client.delete(oid)
    assert oid in deleted
    with pytest.raises(trellis.ObjectNotFound):
        client.get(oid)
    with pytest.raises(trellis.ObjectNotFound):
        client.get_name("arr")
    assert client.status()["used"] < used


def test_delete_while_read_is_deferred(client):
    oid = client.put(np.arange(100000))
    held = client.get(oid)
    client.delete(oid)
    assert client.status()["deleted_pending"] >= 1
    assert held.sum() == sum(range(100000))  # still intact
    del held
    client.status()  # the release travels with the next request
    assert client.status()["deleted_pending"] == 0


def test_blob_writer_abort_and_reuse(client):
    writer = client.create_blob(4096)
    assert client.status()["unsealed_blobs"] == 1
    writer.abort()
    assert client.status()["unsealed_blobs"] == 0
    with pytest.raises(trellis.InvalidArgument, match="no longer writable"):
        writer.seal()


def test_context_manager_and_status(daemon):
    with trellis.connect(daemon.socket, start=False) as client:
        status = client.status()
        assert status["arena_size"] == 512 << 20 and status["clients"] >= 1
        assert len(client.arena) == 512 << 20
    with pytest.raises(trellis.DaemonNotReachable):
        client.status()


def test_module_level_calls(daemon, monkeypatch):
    monkeypatch.setenv("TRELLIS_SOCKET", daemon.socket)
    monkeypatch.setattr(trellis, "_default", None)
    oid = trellis.put({"k": [1, 2]}, name="m", persist=True)
    assert trellis.get(name="m", fetch=True) == {"k": [1, 2]}
    assert trellis.get(oid) == {"k": [1, 2]}
    assert trellis.get_name("m") == oid
    assert trellis.list_names("m") == {"m": oid}
    assert trellis.get_meta(oid).typename == "py::Dict"
    assert trellis.status()["objects"] >= 1
    trellis.drop_name("m")
    assert trellis.delete(oid, deep=True)
    assert trellis.default_client().socket == daemon.socket
    trellis.default_client().close()
    monkeypatch.setattr(trellis, "_default", None)


class _CountingCore:
    """Wraps the extension's client; every method call is one request."""

    def __init__(self, core):
        self._core, self.calls = core, []

    def __getattr__(self, name):
        attr = getattr(self._core, name)
        if callable(attr):
            def call(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)
            return call
        return attr


@pytest.mark.parametrize("value, inline", [
    (np.arange(1 << 20), False),
    (pd.DataFrame({f"c{i}": np.arange(1000) for i in range(46)}), False),
    (pd.DataFrame({f"c{i}": np.arange(100) for i in range(46)}), True),
    (pd.DataFrame({"a": np.arange(5), "s": list("abcde"), "c": pd.Categorical(list("xyzxy")),
                   "n": pd.array([1, None, 3, 4, 5], dtype="Int64")}), True),
    ({"a": np.ones(3), "b": [1, "x", None]}, True),
])
def test_round_trips(client, value, inline):
    """A put of at most INLINE_PUT_BYTES of buffers is one CreateObject
    carrying them (inline_blob is local, no request); a larger one is
    CreateBlobs + CreateObject. A get by id is one GetMeta."""
    counting = _CountingCore(client._core)
    client._core = counting
    oid = client.put(value, name="v", persist=True)
    local = {"take_spare_blob"}  # no request: there is no spare yet
    assert [c for c in counting.calls if c not in local] == (
        ["inline_blob", "create_object"] if inline else ["create_blob", "create_object"])
    counting.calls.clear()
    client.get(oid)
    assert counting.calls == ["get_tree"]


def _unsealed_blobs(daemon):
    with trellis.connect(daemon.socket, start=False) as other:
        return other.status()["unsealed_blobs"]


def test_like_puts_write_into_a_spare_blob_in_one_round_trip(daemon, client):
    """After two puts of like small frames the client holds a spare blob;
    the third put writes into it (no inline copy, no CreateBlobs) and the
    daemon trims it to the frame's bytes. A larger put gives it back for a
    larger one; closing the client frees it."""
    frames = [pd.DataFrame({f"c{i}": np.arange(100) + k for i in range(46)}) for k in range(4)]
    first, second = client.put(frames[0]), client.put(frames[1])
    assert client._core.spare_blob_size >= frames[0].values.nbytes
    assert _unsealed_blobs(daemon) == 1
    counting = _CountingCore(client._core)
    client._core = counting
    third = client.put(frames[2])
    assert counting.calls == ["take_spare_blob", "create_object"]
    client._core = counting._core
    for oid, frame in zip((first, second, third), frames):
        assert client.get(oid).equals(frame)
    assert client.get_meta(third)["nbytes"] == client.get_meta(first)["nbytes"]
    wide = pd.DataFrame({f"c{i}": np.arange(100) for i in range(200)})
    small_spare = client._core.spare_blob_size
    assert client.get(client.put(wide)).equals(wide)  # too large for the spare
    assert client._core.spare_blob_size > small_spare
    assert _unsealed_blobs(daemon) == 1  # the old one went back
    used = client.status()["used"]
    client.close()
    with trellis.connect(daemon.socket, start=False) as other:
        assert other.status()["unsealed_blobs"] == 0
        assert other.status()["used"] < used


def test_a_killed_client_s_spare_blob_is_freed(daemon):
    """A process SIGKILLed while it holds a spare blob leaves nothing
    behind; the daemon keeps serving."""
    code = ("import numpy as np, trellis, sys, time\n"
            f"c = trellis.connect({daemon.socket!r}, start=False)\n"
            "for i in range(3): c.put(np.arange(1000) + i)\n"
            "print(c._core.spare_blob_size, flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            text=True, env=python_env())
    try:
        assert int(proc.stdout.readline()) >= 8000
        assert _unsealed_blobs(daemon) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while _unsealed_blobs(daemon) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _unsealed_blobs(daemon) == 0


def test_a_put_into_the_spare_does_not_wait_and_others_see_it_at_once(daemon, client):
    """Puts into the spare blob return before their reply (it travels with
    the next call); another process that gets the id the moment it is
    printed finds the object, whichever socket the daemon reads first."""
    code = ("import sys, numpy as np, pandas as pd, trellis\n"
            f"c = trellis.connect({daemon.socket!r}, start=False)\n"
            "for i in range(300):\n"
            "    oid = c.put(pd.DataFrame({'a': np.arange(100) + i, 'b': ['x%d' % i] * 100}))\n"
            "    deferred = c._core.replies_pending\n"
            "    print(int(oid), int(deferred), flush=True)\n"
            "sys.stdin.readline()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=python_env())
    try:
        deferred = 0
        for i in range(300):
            oid, pending = map(int, proc.stdout.readline().split())
            deferred += pending
            frame = client.get(oid)
            assert frame["a"].iloc[0] == i and frame["b"].iloc[0] == f"x{i}"
        assert deferred >= 290  # all but the first puts (before a spare)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_get_read_before_the_put_that_makes_its_object_still_finds_it(daemon, client):
    """The daemon, stopped, wakes to a reader's socket that became readable
    before the producer's: the reader's get of the producer's new id is
    read first, and the daemon takes the producer's unread put in before
    answering it, instead of ObjectNotFound."""
    import threading
    with trellis.connect(daemon.socket, start=False) as producer:
        for i in range(3):  # both hold a spare: their puts do not wait
            producer.put(np.arange(100) + i)
            client.put(np.arange(100) + i)
        # The last puts' replies are in (so no put below waits for one).
        assert producer._core.spare_blob_size and client._core.spare_blob_size
        os.kill(daemon.pid, signal.SIGSTOP)
        resumed = threading.Timer(0.3, os.kill, (daemon.pid, signal.SIGCONT))
        try:
            client.put(np.arange(100))  # the reader's socket is readable first
            oid = producer.put(np.arange(100) + 7)
            assert producer._core.replies_pending
            resumed.start()
            got = client.get(oid)  # sent while the daemon is stopped
        finally:
            resumed.cancel()
            os.kill(daemon.pid, signal.SIGCONT)
        assert (got == np.arange(100) + 7).all()


def test_a_put_that_did_not_wait_and_failed_is_raised_by_the_next_put(client):
    """The reply of a put that did not wait is an error (here a tree made by
    hand that the daemon refuses): the next put raises it, naming the
    object; the object is not there, and the client serves on."""
    for i in range(3):
        client.put(np.arange(1000) + i)
    writer = client._core.take_spare_blob(64)
    assert writer is not None
    bad = client._core.create_object({"typename": 7, "members": {"b": trellis._codec.BLOB}},
                                     trellis._codec.BLOB, writer, used=64, wait=False)
    assert client._core.replies_pending
    with pytest.raises(trellis.InvalidArgument, match=f"put of object {bad}"):
        client.put(np.arange(1000))
    with pytest.raises(trellis.ObjectNotFound):
        client.get(bad)
    assert (client.get(client.put(np.arange(1000))) == np.arange(1000)).all()


def test_private_embedded_daemon_explains_missing_names(tmp_socket_dir):
    """The seed's pattern with no daemon running: each step would start its
    own embedded daemon, which ends with it. Say so instead of a bare
    'not found'."""
    import warnings
    socket = os.path.join(tmp_socket_dir, "embedded.sock")
    with trellis.connect(socket, size="64M") as client:
        assert client.daemon is not None and not client.daemon.detached
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client.put(1, name="x", persist=True)
        assert any("ends with this process" in str(w.message) for w in caught)
        with pytest.raises(trellis.ObjectNotFound, match="start_daemon\\(detach=True\\)"):
            client.get(name="missing")
        client.daemon.stop()


def test_get_by_name_is_one_round_trip(client):
    """The daemon resolves the name inside GetMeta; waiting for a name that
    is not bound yet still goes through get_name first."""
    oid = client.put(pd.DataFrame({"a": np.arange(3)}), name="frame")
    counting = _CountingCore(client._core)
    client._core = counting
    assert client.get(name="frame")["a"].tolist() == [0, 1, 2]
    assert counting.calls == ["get_tree_by_name"]
    counting.calls.clear()
    assert client.get(name="frame", wait=True, timeout=1.0)["a"].tolist() == [0, 1, 2]
    assert counting.calls == ["get_name", "get_tree"]
    assert client.get_meta(oid)["typename"] == "trellis::DataFrame"
    with pytest.raises(trellis.InvalidArgument, match="name must be a str"):
        client.get(name=5)
