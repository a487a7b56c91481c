"""Errors: the right classes (trellis and builtin), and messages that say
what was involved."""

import functools
import os
import socket as socketlib

import numpy as np
import pytest

import trellis


def test_exception_hierarchy():
    for cls, builtin in [(trellis.ObjectNotFound, KeyError), (trellis.OutOfMemory, MemoryError),
                         (trellis.InvalidArgument, ValueError),
                         (trellis.DaemonNotReachable, ConnectionError),
                         (trellis.Timeout, TimeoutError), (trellis.UnsupportedType, TypeError),
                         (trellis.ObjectExists, ValueError)]:
        assert issubclass(cls, trellis.TrellisError) and issubclass(cls, builtin)
        assert cls.__module__ == "trellis"
    assert str(trellis.ObjectNotFound("plain text")) == "plain text"  # not KeyError's repr


def test_missing_name_and_id(client):
    with pytest.raises(trellis.ObjectNotFound, match="'no_such_name'"):
        client.get(name="no_such_name")
    with pytest.raises(KeyError):
        client.get_name("no_such_name")
    missing = trellis.ObjectID(12345)
    with pytest.raises(trellis.ObjectNotFound, match=str(missing)):
        client.get(missing)
    with pytest.raises(trellis.ObjectNotFound, match="'gone'"):
        client.drop_name("gone")


def test_full_memory(start_daemon):
    daemon = start_daemon(size="4M")
    with trellis.connect(daemon.socket, start=False) as client:
        client.put(np.zeros(256 << 10, dtype=np.uint8))  # fits
        with pytest.raises(trellis.OutOfMemory, match="cannot allocate 8388608 bytes"):
            client.put(np.zeros(8 << 20, dtype=np.uint8))
        with pytest.raises(MemoryError):
            client.create_blob(16 << 20)
        # The failed puts left nothing allocated.
        assert client.status()["used"] < (512 << 10)
        assert client.status()["unsealed_blobs"] == 0


def test_unsupported_values_say_why(client):
    with pytest.raises(trellis.UnsupportedType, match=r"generator.*pickling it failed"):
        client.put(x for x in range(3))
    with pytest.raises(TypeError, match="lambda|local object"):
        client.put({"f": lambda: 1})
    with pytest.raises(trellis.UnsupportedType, match="socket"):
        with socketlib.socket() as s:
            client.put(s)


def test_bad_arguments(client):
    with pytest.raises(trellis.InvalidArgument, match="not both"):
        client.get()
    with pytest.raises(ValueError):
        client.get(trellis.ObjectID(1), name="x")
    with pytest.raises(trellis.InvalidArgument, match="o' \\+ 16|hex|ObjectID"):
        trellis.ObjectID("not-an-id")
    with pytest.raises(trellis.InvalidArgument):
        client.put(1, name="")
    with pytest.raises(trellis.InvalidArgument, match="timeout"):
        client.get(name="x", wait=True, timeout=-1)
    with pytest.raises(trellis.InvalidArgument):
        client.create_blob(-1)


def test_name_collision_without_overwrite(client):
    client.put(1, name="taken")
    with pytest.raises(trellis.ObjectExists, match="'taken'"):
        client.put(2, name="taken", overwrite=False)
    assert client.get(name="taken") == 1


def test_daemon_not_reachable(tmp_socket_dir):
    path = os.path.join(tmp_socket_dir, "nobody.sock")
    with pytest.raises(trellis.DaemonNotReachable, match="nobody.sock"):
        trellis.connect(path, start=False)
    with pytest.raises(ConnectionError):
        trellis.connect(path, start=False)


def test_closed_client(daemon):
    client = trellis.connect(daemon.socket, start=False)
    kept = client.get(client.put(np.arange(10)))
    client.close()
    with pytest.raises(trellis.DaemonNotReachable, match="closed"):
        client.put(1)
    assert kept.sum() == 45  # gotten objects stay readable


def test_daemon_start_failure_quotes_its_log(tmp_socket_dir):
    with pytest.raises(trellis.DaemonNotReachable, match="size"):
        trellis._daemon.launch(os.path.join(tmp_socket_dir, "bad.sock"), size="lots")


@pytest.mark.parametrize("fields, message", [
    ({1: "x"}, "keys must be str, got int at tree.fields"),
    ({"n": 1 << 70}, "integer at tree.fields.n does not fit in 64 bits"),
    ({"f": [1, object()]}, r"cannot store a object in object metadata at tree.fields.f\[1\]"),
    ({"deep": functools.reduce(lambda v, _: [v], range(70), 0)}, "nests deeper than"),
])
def test_bad_metadata_is_refused_before_sending(client, fields, message):
    """Trees are written to the request by the extension; what it cannot
    write is InvalidArgument naming the path, and nothing else is harmed."""
    from trellis import _codec

    writer = client._core.create_blob(8)
    tree = {"typename": "example::T", "fields": fields, "members": {"b": _codec.BLOB}}
    with pytest.raises(trellis.InvalidArgument, match=message):
        client._core.create_object(tree, _codec.BLOB, writer, "", False, True)
    assert writer.open  # still the caller's to seal or abort
    writer.abort()
    assert client.get(client.put([1, "two"])) == [1, "two"]


def test_busy_poll_daemon_serves_and_bad_values_are_refused(start_daemon, monkeypatch):
    for value in (300, "auto"):
        daemon = start_daemon(name=f"poll-{value}", busy_poll_us=value)
        with trellis.connect(daemon.socket, start=False) as c:
            oid = c.put(np.arange(10))
            assert c.get(oid).tolist() == list(range(10))
    for bad in (-1, 100001, "soon", 1.5, True):
        with pytest.raises(trellis.InvalidArgument, match="busy_poll_us"):
            start_daemon(name="bad", busy_poll_us=bad)
    monkeypatch.setenv("TRELLIS_BUSY_POLL_US", "lots")
    with pytest.raises(trellis.InvalidArgument, match="TRELLIS_BUSY_POLL_US"):
        start_daemon(name="bad-env")
