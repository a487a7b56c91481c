"""Remote clients: trellis.connect("host:port") talks to a daemon's RPC
server (trellisd --rpc) with no shared arena. Puts send the bytes, gets copy
them back; values, names and errors are those of an IPC client."""

import os
import sys
import time

import numpy as np
import pandas as pd
import pytest

import trellis
from trellis import _daemon
from cluster_fixture import free_port, make_cluster  # noqa: F401 (fixture)
from conftest import PACKAGE_ROOT


@pytest.fixture
def rpc_daemon(start_daemon, tmp_socket_dir):
    """rpc_daemon(token=None) -> Daemon serving a UNIX socket and RPC on
    127.0.0.1 (a free port: ``rpc_endpoint``); with `token`, clients must
    present it (its file: ``token_file``)."""
    def start(token=None, size="512M"):
        token_file = None
        if token is not None:
            token_file = os.path.join(tmp_socket_dir, "token")
            with open(token_file, "w") as f:
                f.write(token + "\n")
            os.chmod(token_file, 0o600)
        d = start_daemon(size=size, rpc="127.0.0.1:0", rpc_token=token_file)
        d.token_file = token_file
        return d

    return start


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def frame46(rows=1000):
    rng = np.random.default_rng(7)
    cols = {}
    for i in range(46):
        kind = i % 4
        if kind == 0:
            cols[f"f{i}"] = rng.standard_normal(rows)
        elif kind == 1:
            cols[f"i{i}"] = rng.integers(0, 1 << 40, rows)
        elif kind == 2:
            cols[f"s{i}"] = [f"v{j % 17}" for j in range(rows)]
        else:
            cols[f"b{i}"] = rng.integers(0, 2, rows).astype(bool)
    return pd.DataFrame(cols)


def test_remote_client_puts_and_gets_every_kind(rpc_daemon):
    d = rpc_daemon()
    with trellis.connect(d.rpc_endpoint) as remote, \
            trellis.connect(d.socket, start=False) as local:
        assert remote.is_remote and not local.is_remote
        assert len(remote.arena) == 0
        assert remote.socket == d.rpc_endpoint
        arr = np.arange(3_000_000, dtype=np.float64).reshape(1000, 3000)
        df = frame46()
        values = {
            "array": arr,
            "frame": df,
            "builtins": {"a": [1, 2.5, "x", None, True], "b": (b"raw", {"n": 3})},
            "pickled": Point(3, 4),
            "empty": np.zeros(0, dtype=np.int32),
        }
        ids = {}
        for key, value in values.items():
            ids[key] = remote.put(value, name=key)
        for key, value in values.items():
            for client in (remote, local):
                got = client.get(ids[key])
                by_name = client.get(name=key)
                if isinstance(value, np.ndarray):
                    np.testing.assert_array_equal(got, value)
                    np.testing.assert_array_equal(by_name, value)
                elif isinstance(value, pd.DataFrame):
                    pd.testing.assert_frame_equal(got, value)
                    pd.testing.assert_frame_equal(by_name, value)
                else:
                    assert got == value and by_name == value
        # Remote arrays are read-only views of client memory, not the arena.
        got = remote.get(ids["array"])
        assert not got.flags.writeable
        assert got.ctypes.data not in local.arena
        # Values put over IPC read the same remotely.
        oid = local.put(df, name="from_ipc")
        pd.testing.assert_frame_equal(remote.get(name="from_ipc"), df)
        meta = remote.get_meta(oid)
        assert meta.typename == local.get_meta(oid).typename
        # The remote client holds nothing at the daemon after a get (its
        # release is sent before the get returns, on another connection
        # than this status: allow the daemon a moment to read it).
        deadline = time.monotonic() + 10
        while local.status()["held_bytes"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert local.status()["held_bytes"] == 0


def test_names_delete_list_and_status_across_ipc_and_remote(rpc_daemon):
    d = rpc_daemon()
    with trellis.connect(d.rpc_endpoint) as remote, \
            trellis.connect(d.socket, start=False) as local:
        a = local.put([1, 2, 3])
        remote.put_name(a, "shared")
        assert local.get_name("shared") == a
        assert remote.get(name="shared") == [1, 2, 3]
        b = remote.put("hello")
        local.put_name(b, "other")
        assert remote.list_names() == local.list_names() == {"shared": a, "other": b}
        remote.drop_name("other")
        with pytest.raises(trellis.ObjectNotFound):
            local.get_name("other")
        assert remote.status()["objects"] == local.status()["objects"]
        assert len(remote.list_objects()) == len(local.list_objects())
        assert b in remote.delete(b)
        with pytest.raises(trellis.ObjectNotFound):
            local.get(b)
        with pytest.raises(trellis.ObjectNotFound):
            remote.get(b)
        blob = remote.create_blob(5)
        memoryview(blob)[:] = b"abcde"
        sealed = blob.seal()
        assert bytes(local.get_blob(sealed.id)) == b"abcde"
        assert bytes(remote.get_blob(sealed.id)) == b"abcde"


def test_token_required_and_checked(rpc_daemon, monkeypatch):
    d = rpc_daemon(token="pa55word")
    with pytest.raises(trellis.InvalidArgument, match="RPC token rejected"):
        trellis.connect(d.rpc_endpoint)
    with pytest.raises(trellis.InvalidArgument, match="invalid RPC token"):
        trellis.connect(d.rpc_endpoint, token="wrong")
    with trellis.connect(d.rpc_endpoint, token="pa55word") as c:
        assert c.get(c.put({"ok": 1})) == {"ok": 1}
    monkeypatch.setenv("TRELLIS_RPC_TOKEN_FILE", d.token_file)
    with trellis.connect(d.rpc_endpoint) as c:
        assert c.status()["arena_size"] > 0
    with pytest.raises(trellis.InvalidArgument):
        trellis.connect(d.socket, token="x")  # a UNIX socket takes none


def test_dead_endpoint_is_daemon_not_reachable(rpc_daemon):
    d = rpc_daemon()
    c = trellis.connect(d.rpc_endpoint)
    d.stop()
    with pytest.raises(trellis.DaemonNotReachable, match=d.rpc_endpoint):
        c.get(trellis.ObjectID(1))
    with pytest.raises(trellis.DaemonNotReachable, match=d.rpc_endpoint):
        trellis.connect(d.rpc_endpoint)


REMOTE_SCRIPT = """
import sys
import numpy as np
import trellis
endpoint, token = sys.argv[1], sys.argv[2]
with trellis.connect(endpoint, token=token) as c:
    assert c.is_remote
    a = np.arange(1 << 20, dtype=np.int64)
    c.put(a, name="from_node1")
    assert (c.get(name="from_node1") == a).all()
    print("seen", c.get(name="from_node2"))
"""


def test_remote_client_in_another_network_namespace(make_cluster, tmp_socket_dir):
    c = make_cluster(2, etcd=False)
    token_file = os.path.join(tmp_socket_dir, "token")
    with open(token_file, "w") as f:
        f.write("netns-token\n")
    os.chmod(token_file, 0o600)
    # A namespace has ports of its own; on the loopback fallback pick a free one.
    port = 7311 if c.mode == "netns" else free_port(c.address(2))
    endpoint = f"{c.address(2)}:{port}"
    d = c.start_daemon(2, ["--rpc", endpoint, "--rpc-token", token_file])
    with trellis.connect(d.socket, start=False) as local:
        local.put("hello from node 2", name="from_node2")
        env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
        r = c.run(1, [sys.executable, "-c", REMOTE_SCRIPT, endpoint, "netns-token"],
                  env=env)
        assert "seen hello from node 2" in r.stdout
        np.testing.assert_array_equal(local.get(name="from_node1"),
                                      np.arange(1 << 20, dtype=np.int64))


def test_launch_with_rpc_reports_the_endpoint(tmp_socket_dir):
    sock = os.path.join(tmp_socket_dir, "l.sock")
    d = _daemon.launch(sock, size="64M", rpc=0)
    try:
        host, port = d.rpc_endpoint.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        with trellis.connect(sock, start=False) as local:
            oid = local.put(np.arange(5), name="via-launch")
        with trellis.connect(d.rpc_endpoint) as remote:
            assert remote.get_name("via-launch") == oid
            np.testing.assert_array_equal(remote.get(oid), np.arange(5))
    finally:
        d.stop()
    for bad in ("", 1.5, True):
        with pytest.raises(trellis.InvalidArgument, match="rpc must be"):
            _daemon.launch(os.path.join(tmp_socket_dir, "b.sock"), rpc=bad)
    with pytest.raises(trellis.InvalidArgument, match="rpc_token needs rpc"):
        _daemon.launch(os.path.join(tmp_socket_dir, "c.sock"), rpc_token="/x")
