"""The `trellis` command-line tool (python/trellis/cli.py), run as users run
it: build/bin/trellis against a live daemon. Every command, and bad input:
a one-line error, a non-zero exit, nothing in the store changed."""

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

import trellis
from trellis import _config

TRELLIS = os.path.join(_config.BIN_DIR, "trellis")


def run(*args, socket=None, expect=0, stdin=None):
    """Runs `trellis ARGS` (with --socket); returns (stdout, stderr)."""
    cmd = [TRELLIS, *args] + (["--socket", socket] if socket else [])
    proc = subprocess.run(cmd, capture_output=True, timeout=120, input=stdin)
    assert proc.returncode == expect, (cmd, proc.returncode, proc.stderr.decode())
    return proc.stdout, proc.stderr.decode()


def fails(*args, socket=None, says):
    """A failing command: exit 1 and one line on stderr saying `says`."""
    out, err = run(*args, socket=socket, expect=1)
    assert err.startswith("trellis: error: ") and err.count("\n") == 1, err
    assert says in err, err
    return err


def snapshot(client):
    """What a failed command must leave as it was."""
    status = client.status()
    return (client.list_names(), status["objects"], status["blobs"], status["used"])


@pytest.fixture
def store(client):
    frame = pd.DataFrame({"a": np.arange(5), "b": list("vwxyz")})
    client.put(frame, name="frame")
    client.put(np.arange(12.0).reshape(3, 4), name="matrix")
    client.put(b"\x00raw\xff", name="blob")
    return client


def test_status_human_and_json(store, daemon):
    out, _ = run("status", socket=daemon.socket)
    text = out.decode()
    assert daemon.socket in text and "local metadata" in text
    assert "arena" in text and "objects" in text and "clients" in text
    data = json.loads(run("status", "--json", socket=daemon.socket)[0])
    assert data["status"]["objects"] == store.status()["objects"]
    assert data["cluster"]["members"][0]["instance_id"] == store.instance_id
    # Options before the command work too.
    data = json.loads(run("--json", "--socket", daemon.socket, "status")[0])
    assert data["socket"] == daemon.socket


def test_ls_names_and_globs(store, daemon):
    text = run("ls", socket=daemon.socket)[0].decode()
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["ID", "NAMES", "TYPE", "SIZE"]
    assert len(lines) == 4  # the three objects put, not their members
    assert any("frame" in line and "trellis::DataFrame" in line for line in lines)
    rows = json.loads(run("ls", "--json", socket=daemon.socket)[0])
    by_name = {r["names"][0]: r for r in rows}
    assert set(by_name) == {"frame", "matrix", "blob"}
    assert by_name["matrix"]["nbytes"] == 96 and by_name["matrix"]["node"] == store.instance_id
    assert by_name["matrix"]["id"] == str(store.get_name("matrix"))
    assert all(r["age_s"] >= 0 and r["readers"] == 0 for r in rows)
    # --all adds the members (blobs, index, ...).
    assert len(json.loads(run("ls", "--all", "--json", socket=daemon.socket)[0])) > 3
    # Globs match names, ids and type names.
    assert [r["names"] for r in json.loads(run("ls", "m*", "--json", socket=daemon.socket)[0])] \
        == [["matrix"]]
    assert len(json.loads(run("ls", "trellis::D*", "--json", socket=daemon.socket)[0])) == 1
    oid = str(store.get_name("blob"))
    assert json.loads(run("ls", oid, "--json", socket=daemon.socket)[0])[0]["names"] == ["blob"]
    assert json.loads(run("ls", "nothing*", "--json", socket=daemon.socket)[0]) == []
    names = json.loads(run("names", "--json", socket=daemon.socket)[0])
    assert names == {n: str(i) for n, i in store.list_names().items()}
    assert run("names", "f*", socket=daemon.socket)[0].decode().split() == \
        ["NAME", "ID", "frame", str(store.get_name("frame"))]


def test_ls_shows_holds_and_pins(start_daemon, tmp_path):
    daemon = start_daemon(spill_dir=str(tmp_path))
    with trellis.connect(daemon.socket, start=False) as client:
        client.put(np.arange(1000), name="held")
        client.put(np.arange(2000), name="pinned")
        client.put(np.arange(3000), name="spilled")
        held = client.get(name="held")  # noqa: F841  (holds it while ls runs)
        run("pin", "pinned", socket=daemon.socket)
        out = run("evict", "spilled", socket=daemon.socket)[0].decode()
        assert out.startswith("spilled 23.4 KiB")
        rows = {r["names"][0]: r for r in
                json.loads(run("ls", "--json", socket=daemon.socket)[0])}
        assert rows["held"]["readers"] == 1
        assert rows["pinned"]["pinned_bytes"] == 16000
        assert rows["spilled"]["spilled_bytes"] == 24000
        run("unpin", "pinned", socket=daemon.socket)
        rows = {r["names"][0]: r for r in
                json.loads(run("ls", "--json", socket=daemon.socket)[0])}
        assert rows["pinned"]["pinned_bytes"] == 0
        # Evicting what a reader holds is refused, and nothing changes.
        before = snapshot(client)
        fails("evict", "held", socket=daemon.socket, says="held")
        assert snapshot(client) == before


def test_stat_shows_the_tree(store, daemon):
    tree = json.loads(run("stat", "frame", "--json", socket=daemon.socket)[0])
    assert tree["typename"] == "trellis::DataFrame"
    assert tree["id"] == str(store.get_name("frame"))
    assert tree["fields"]["columns"] == ["a", "b"]
    assert all(isinstance(m["id"], str) for m in tree["members"].values())
    human = run("stat", str(store.get_name("matrix")), socket=daemon.socket)[0].decode()
    assert '"shape": [' in human and "\n  " in human  # indented


def test_get_writes_npy_csv_and_raw(store, daemon, tmp_path):
    run("get", "matrix", "-o", str(tmp_path / "m.npy"), socket=daemon.socket)
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), np.arange(12.0).reshape(3, 4))
    csv = run("get", "frame", socket=daemon.socket)[0]
    got = pd.read_csv(pd.io.common.BytesIO(csv), index_col=0)
    pd.testing.assert_frame_equal(got, pd.DataFrame({"a": np.arange(5), "b": list("vwxyz")}))
    assert run("get", "blob", socket=daemon.socket)[0] == b"\x00raw\xff"
    store.put({"k": [1, 2]}, name="json")
    assert json.loads(run("get", "json", socket=daemon.socket)[0]) == {"k": [1, 2]}


def test_put_reads_csv_npy_and_bytes(client, daemon, tmp_path):
    (tmp_path / "t.csv").write_text("x,y\n1,a\n2,b\n")
    out = run("put", str(tmp_path / "t.csv"), "--name", "t", socket=daemon.socket)[0].decode()
    assert out.split() == [str(client.get_name("t")), "t"]
    pd.testing.assert_frame_equal(client.get(name="t"),
                                  pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}))
    np.save(tmp_path / "v.npy", np.arange(7, dtype=np.int32))
    data = json.loads(run("put", str(tmp_path / "v.npy"), "--name", "v", "--json",
                          socket=daemon.socket)[0])
    assert data == {"id": str(client.get_name("v")), "name": "v"}
    assert client.get(name="v").tolist() == list(range(7))
    (tmp_path / "notes.txt").write_bytes(b"hello")
    run("put", str(tmp_path / "notes.txt"), "--name", "n", "--as", "bytes",
        socket=daemon.socket)
    assert client.get(name="n") == b"hello"
    # The name is kept unless asked: --no-overwrite refuses a bound name.
    before = snapshot(client)
    fails("put", str(tmp_path / "t.csv"), "--name", "t", "--no-overwrite",
          socket=daemon.socket, says="already bound")
    assert snapshot(client) == before


def test_rm_deletes_objects_and_their_names(store, daemon):
    frame_id = store.get_name("frame")
    out = run("rm", "frame", str(store.get_name("matrix")), socket=daemon.socket)[0].decode()
    assert out.startswith("deleted 2 object(s)")
    assert set(store.list_names()) == {"blob"}
    with pytest.raises(trellis.ObjectNotFound):
        store.get(frame_id)


def test_trim_and_pin_without_spilling(store, daemon):
    assert run("trim", socket=daemon.socket)[0].decode().startswith("gave ")
    assert "released_bytes" in json.loads(run("trim", "--json", socket=daemon.socket)[0])
    run("pin", "frame", "matrix", socket=daemon.socket)
    run("unpin", "frame", socket=daemon.socket)
    before = snapshot(store)
    fails("evict", "matrix", socket=daemon.socket, says="spill")
    assert snapshot(store) == before


@pytest.mark.parametrize("args, says", [
    (["get", "nope"], "name 'nope' not found"),
    (["get", "o00000000000000ff"], "is unavailable"),
    (["stat", "nope"], "not found"),
    (["rm", "frame", "nope"], "name 'nope' not found"),  # all or nothing
    (["pin", "nope"], "not found"),
    (["ls", "[z-a]"], "invalid glob '[z-a]'"),
    (["ls", "[abc"], "never closed"),
    (["names", ""], "empty pattern"),
    (["put", "/nonexistent/t.csv", "--name", "x"], "cannot read /nonexistent/t.csv"),
    (["put", "/etc/hostname", "--name", "x"], "not .csv or .npy"),
    (["get", "frame", "-o", "/nonexistent/dir/f.csv"], "cannot write"),
    (["start"], "already serves"),
])
def test_bad_input_is_one_line_and_changes_nothing(store, daemon, args, says):
    before = snapshot(store)
    fails(*args, socket=daemon.socket, says=says)
    assert snapshot(store) == before


def test_unreadable_and_malformed_files(client, daemon, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    before = snapshot(client)
    fails("put", str(bad), "--name", "b", socket=daemon.socket, says="cannot read")
    locked = tmp_path / "locked.csv"
    locked.write_text("a\n1\n")
    locked.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        fails("put", str(locked), "--name", "l", socket=daemon.socket, says="Permission")
    assert snapshot(client) == before


def test_no_daemon(tmp_socket_dir):
    socket = os.path.join(tmp_socket_dir, "none.sock")
    for args in (["status"], ["ls"], ["get", "x"], ["stop"]):
        fails(*args, socket=socket, says=f"no trellisd serves {socket}")
    run("status", "--rpc", "127.0.0.1:1", expect=1)  # nothing listens there


def test_bad_command_lines_exit_2(daemon):
    for args in (["frobnicate"], ["get"], ["put", "f.csv", "--as", "xml"], []):
        _, err = run(*args, socket=daemon.socket, expect=2)
        assert "usage:" in err


def test_start_and_stop_a_detached_daemon(tmp_socket_dir, tmp_path):
    socket = os.path.join(tmp_socket_dir, "cli.sock")
    out = json.loads(run("start", "--size", "64M", "--metrics", "0", "--json",
                         socket=socket)[0])
    try:
        assert out["socket"] == socket and out["metrics_url"].startswith("http://127.0.0.1:")
        with trellis.connect(socket, start=False) as c:
            assert c.status()["arena_size"] == 64 << 20
        (tmp_path / "t.csv").write_text("a\n1\n")
        run("put", str(tmp_path / "t.csv"), "--name", "t", socket=socket)
        assert "t" in run("names", socket=socket)[0].decode()
    finally:
        out = run("stop", socket=socket)[0].decode()
    assert out.startswith("stopped")
    fails("stop", socket=socket, says="no trellisd serves")


def test_rpc_endpoint(start_daemon, tmp_path):
    daemon = start_daemon(rpc=0)
    with trellis.connect(daemon.socket, start=False) as client:
        client.put(np.arange(3), name="r")
    rows = json.loads(run("ls", "--json", "--rpc", daemon.rpc_endpoint)[0])
    assert rows[0]["names"] == ["r"]
    run("get", "r", "-o", str(tmp_path / "r.npy"), "--rpc", daemon.rpc_endpoint)
    assert np.load(tmp_path / "r.npy").tolist() == [0, 1, 2]
    fails("start", "--rpc", daemon.rpc_endpoint, says="not --rpc")


def test_completion_script_is_bash():
    out = subprocess.run([TRELLIS, "completion"], capture_output=True, text=True,
                         check=True).stdout
    assert "complete -F _trellis trellis" in out
    subprocess.run(["bash", "-n"], input=out, text=True, check=True)  # parses
