"""get(..., fetch=True) across a cluster of real hosts (cluster_fixture: one
trellisd per network namespace, RPC between them, metadata in a real etcd;
loopback where namespaces cannot be made, which it says).

An object put on node 1 is fetched byte-identical on nodes 2 and 3; without
fetch the error says where it lives; concurrent fetches of one object make
one transfer; a node SIGKILLed mid-transfer gives the fetching side a clear
error and leaves no partial object; an object of a node that is gone is
reported unavailable, naming the node; a member with the wrong token is
refused."""

import os
import threading
import time

import numpy as np
import pandas as pd
import pytest

import trellis
from cluster_fixture import make_cluster  # noqa: F401 (pytest fixture)

CLUSTER = "fetch"
TOKEN = "fetch test secret"
PATIENCE = 20.0  # seconds; only a failing test waits that long
MiB = 1 << 20


def token_file(c, text=TOKEN, name="token"):
    path = os.path.join(c.dir, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def join(c, k, token=None, size="512M", log_level="warn"):
    """trellisd in node k: a member of CLUSTER serving RPC on its address."""
    token = token or token_file(c)
    return c.start_daemon(k, ["--etcd", c.etcd.endpoint, "--cluster", CLUSTER,
                              "--rpc", f"{c.address(k)}:0", "--rpc-token", token],
                          size=size, log_level=log_level)


def connect(daemon):
    return trellis.connect(daemon.socket, start=False)


def eventually(pred, what):
    deadline = time.monotonic() + PATIENCE
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {PATIENCE} s: {what}")
        time.sleep(0.05)


def frame(rows):
    rng = np.random.default_rng(rows)
    return pd.DataFrame({"x": rng.standard_normal(rows),
                         "n": np.arange(rows, dtype=np.int64),
                         "s": [f"row {i}" for i in range(rows)]})


def test_put_on_one_node_fetched_byte_identical_on_two_others(make_cluster):
    c = make_cluster(3)
    d1, d2, d3 = join(c, 1), join(c, 2), join(c, 3)
    with connect(d1) as a, connect(d2) as b, connect(d3) as cc:
        df = frame(200_000)
        big = np.random.default_rng(1).integers(0, 255, 48 * MiB, dtype=np.uint8)
        a.put(df, name="frame")
        big_id = a.put(big, name="big")
        home = a.status()["instance_id"]

        # Without fetch: where it lives, and how to get it.
        with pytest.raises(trellis.ObjectNotFound) as e:
            b.get(name="frame")
        assert f"instance {home}" in str(e.value)
        assert c.address(1) in str(e.value)
        assert "fetch=True" in str(e.value)

        for client in (b, cc):
            got = client.get(name="frame", fetch=True)
            pd.testing.assert_frame_equal(got, df)
            arr = client.get(big_id, fetch=True)
            assert arr.dtype == big.dtype and np.array_equal(arr, big)
            # A local copy now: later gets need no fetch, zero-copy views.
            again = client.get(name="big")
            assert not again.flags.writeable
            s = client.status()
            assert s["fetch_count"] == 2 and s["fetch_failures"] == 0
            assert s["fetch_bytes_total"] >= big.nbytes
        # The origin keeps its objects and holds nothing for the fetchers
        # once their releases are in (a fetcher's release travels with its
        # next request or within kIdlePeriod, 50 ms: docs/protocol.md).
        deadline = time.monotonic() + 10
        while a.status()["held_bytes"] and time.monotonic() < deadline:
            time.sleep(0.01)
        s = a.status()
        assert s["objects"] >= 2 and s["held_bytes"] == 0


def test_concurrent_fetches_of_one_object_transfer_it_once(make_cluster):
    c = make_cluster(2)
    d1, d2 = join(c, 1), join(c, 2)
    data = np.random.default_rng(2).standard_normal(32 * MiB)  # 256 MiB
    with connect(d1) as a:
        a.put(data, name="shared")
    readers = 4
    start = threading.Barrier(readers)
    results, errors = [None] * readers, []

    def read(i):
        try:
            with connect(d2) as b:
                start.wait()
                results[i] = b.get(name="shared", fetch=True)
                assert np.array_equal(results[i], data)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE * 3)
    assert not errors, errors
    with connect(d2) as b:
        s = b.status()
    # One transfer, whatever the interleaving: a reader that came while it
    # ran joined it; one that came after found the copy.
    assert s["fetch_count"] == 1, s
    assert s["fetch_bytes_total"] == data.nbytes
    print(f"{readers} readers, {s['fetch_joined']} joined the transfer")


def test_node_killed_mid_transfer_fails_clearly_and_leaves_nothing(make_cluster):
    c = make_cluster(2)
    if c.mode != "netns":
        pytest.skip("needs network namespaces to slow the link down so the "
                    "kill lands mid-transfer (loopback fallback in use)")
    d1, d2 = join(c, 1), join(c, 2, log_level="info")
    data = np.ones(128 * MiB, dtype=np.uint8)
    with connect(d1) as a:
        a.put(data, name="doomed")
    c.throttle(1, "200mbit")  # 128 MiB take about 5 s
    outcome = {}

    def fetch():
        with connect(d2) as b:
            try:
                outcome["value"] = b.get(name="doomed", fetch=True)
            except Exception as e:
                outcome["error"] = e

    t = threading.Thread(target=fetch)
    t.start()
    # Once the transfer is under way (node 2 logs its start), kill node 1.
    eventually(lambda: "fetching" in open(d2.log).read(), "the transfer starts")
    time.sleep(0.5)
    d1.process.kill()
    d1.process.wait()
    t.join(PATIENCE)
    assert not t.is_alive(), "the fetch hangs after its peer died"
    assert "value" not in outcome, "the fetch completed before the kill"
    err = outcome["error"]
    print(f"fetching side: {type(err).__name__}: {err}")
    assert isinstance(err, trellis.DaemonNotReachable), err
    assert c.address(1) in str(err)
    with connect(d2) as b:
        s = b.status()
        assert s["objects"] == s["blobs"] == s["unsealed_blobs"] == 0, s
        assert s["used"] == 0 and s["fetch_failures"] == 1
        # The daemon goes on serving.
        assert b.get(b.put("still here")) == "still here"
    assert "fetch of" in open(d2.log).read()


def test_objects_of_a_gone_node_are_unavailable_naming_it(make_cluster):
    c = make_cluster(2)
    d1, d2 = join(c, 1), join(c, 2)
    with connect(d1) as a:
        oid = a.put(np.arange(1000), name="orphan", persist=True)
        home = a.status()["instance_id"]
    d1.process.kill()
    d1.process.wait()
    with connect(d2) as b:
        # Until its lease ends the member is listed but does not answer:
        # a clear error at once, never a hang.
        began = time.monotonic()
        with pytest.raises((trellis.DaemonNotReachable, trellis.ObjectNotFound)) as e:
            b.get(oid, fetch=True)
        assert time.monotonic() - began < PATIENCE
        assert f"{oid}" in str(e.value)

        def reported_gone():
            try:
                b.get(name="orphan", fetch=True)
            except trellis.ObjectNotFound as e:
                return "not a member" in str(e)
            except trellis.DaemonNotReachable:
                return False
            raise AssertionError("an object of a dead node was gotten")

        eventually(reported_gone, "the dead node's object reported unavailable")
        with pytest.raises(trellis.ObjectNotFound) as e:
            b.get(oid, fetch=True)
        assert f"instance {home}" in str(e.value)
        assert f"cluster '{CLUSTER}'" in str(e.value)


def test_a_member_with_the_wrong_token_is_refused(make_cluster):
    c = make_cluster(2)
    d1 = join(c, 1)
    d2 = join(c, 2, token=token_file(c, "another secret", name="wrong"))
    with connect(d1) as a:
        oid = a.put(np.arange(10))
    with connect(d2) as b:
        with pytest.raises(trellis.InvalidArgument) as e:
            b.get(oid, fetch=True)
        assert "token" in str(e.value)
        assert b.status()["used"] == 0
