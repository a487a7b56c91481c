"""Daemons in one cluster: trellisd --etcd ENDPOINT --cluster NAME on a real
etcd (cluster_fixture: one node per network namespace, or loopback where
namespaces cannot be made, which it says). Names are cluster-wide, a
waiting get_name on one node is woken by a put_name on another, a daemon
that dies leaves the member list, and an etcd that is killed and restarted
is survived without restarting any daemon."""

import json
import os
import threading
import time

import numpy as np
import pytest

import trellis
from cluster_fixture import make_cluster  # noqa: F401 (pytest fixture)

CLUSTER = "pytest"
PATIENCE = 20.0  # seconds; only a failing test waits that long


def join(c, k, cluster=CLUSTER):
    """trellisd in node k, member of `cluster` on the fixture's etcd."""
    return c.start_daemon(k, ["--etcd", c.etcd.endpoint, "--cluster", cluster])


def connect(daemon):
    return trellis.connect(daemon.socket, start=False)


def members(c, cluster=CLUSTER):
    """{instance id: InstanceInfo dict} as etcd holds them now."""
    out = c.etcdctl(1, "get", "--prefix", f"/trellis/{cluster}/instances/",
                    "--print-value-only")
    infos = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {i["instance_id"]: i for i in infos}


def eventually(pred, what):
    deadline = time.monotonic() + PATIENCE
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {PATIENCE} s: {what}")
        time.sleep(0.05)  # etcd's leases run on real time


def test_names_are_cluster_wide(make_cluster):
    c = make_cluster(2)
    d1, d2 = join(c, 1), join(c, 2)
    with connect(d1) as a, connect(d2) as b:
        sa, sb = a.status(), b.status()
        assert sa["backend"] == sb["backend"] == "etcd"
        assert sa["instance_id"] != sb["instance_id"]
        assert set(members(c)) == {sa["instance_id"], sb["instance_id"]}
        info = members(c)[sa["instance_id"]]
        assert info["ipc_socket"] == d1.socket
        assert info["arena_size"] == sa["arena_size"]

        oid = a.put(np.arange(10), name="x")
        assert b.get_name("x") == oid
        assert b.list_names("x*") == {"x": oid}
        # Bound on node 1: overwrite=False on node 2 is refused.
        other = b.put("node 2's value")
        with pytest.raises(trellis.ObjectExists):
            b.put_name(other, "x", overwrite=False)
        b.put_name(other, "x")
        assert a.get_name("x") == other
        b.drop_name("x")
        with pytest.raises(trellis.ObjectNotFound):
            a.get_name("x")
        # A deleted object's names go everywhere.
        a.put_name(oid, "y")
        a.delete(oid)
        with pytest.raises(trellis.ObjectNotFound):
            b.get_name("y")
        # persist publishes the tree cluster-wide, delete withdraws it.
        kept = a.put(np.ones(4), persist=True)
        key = f"/trellis/{CLUSTER}/objects/{kept}"
        tree = json.loads(c.etcdctl(2, "get", key, "--print-value-only"))
        assert tree["typename"] and tree["instance_id"] == sa["instance_id"]
        a.delete(kept)
        assert c.etcdctl(2, "get", key, "--print-value-only").strip() == ""


def test_another_cluster_on_the_same_etcd_shares_nothing(make_cluster):
    c = make_cluster(2)
    d1, d2 = join(c, 1, "one"), join(c, 2, "two")
    with connect(d1) as a, connect(d2) as b:
        a.put(1, name="x")
        with pytest.raises(trellis.ObjectNotFound):
            b.get_name("x")
        # Each cluster counts its own instance ids from 1.
        assert a.status()["instance_id"] == b.status()["instance_id"] == 1


def test_waiting_get_name_is_woken_by_a_put_name_on_another_node(make_cluster):
    c = make_cluster(2)
    d1, d2 = join(c, 1), join(c, 2)
    got = {}

    def wait_on_node_2():
        with connect(d2) as b:
            try:
                got["id"] = b.get_name("late", wait=True, timeout=PATIENCE)
            except Exception as e:  # reported below
                got["error"] = e

    waiter = threading.Thread(target=wait_on_node_2)
    waiter.start()
    # Give the waiter time to ask first (if it asks after the bind it is
    # answered by its lookup instead: the test still passes, it just did
    # not exercise the watch). The daemon never polls etcd for a waiter: it
    # looks once, then only the name watch (NameListener) answers it.
    time.sleep(0.5)
    assert waiter.is_alive(), got
    with connect(d1) as a:
        oid = a.put("bound on node 1", name="late")
    waiter.join(PATIENCE + 5)
    assert not waiter.is_alive()
    assert "error" not in got, got
    assert got["id"] == oid


def test_a_dead_daemon_leaves_the_member_list(make_cluster):
    c = make_cluster(3)
    d1, d2, d3 = join(c, 1), join(c, 2), join(c, 3)
    ids = {}
    for d in (d1, d2, d3):
        with connect(d) as cl:
            ids[d] = cl.status()["instance_id"]
    assert set(members(c)) == set(ids.values())
    # SIGTERM: the daemon revokes its lease on the way out, it is gone at once.
    d3.stop()
    assert set(members(c)) == {ids[d1], ids[d2]}
    # SIGKILL: no goodbye; the lease (3 s) expires.
    d2.process.kill()
    d2.process.wait()
    killed = time.monotonic()
    eventually(lambda: set(members(c)) == {ids[d1]}, "the killed daemon drops out")
    print(f"killed daemon left the member list after "
          f"{time.monotonic() - killed:.1f} s")
    # A new daemon gets a new id: ids are never reused.
    d4 = join(c, 2)
    with connect(d4) as cl:
        assert cl.status()["instance_id"] == max(ids.values()) + 1


def test_etcd_down_fails_clearly_local_requests_go_on_and_all_resumes(make_cluster):
    c = make_cluster(2)
    d1, d2 = join(c, 1), join(c, 2)
    with connect(d1) as a, connect(d2) as b:
        id1, id2 = a.status()["instance_id"], b.status()["instance_id"]
        kept = a.put(np.arange(1000), name="before")
        c.etcd.kill()

        # Requests that need etcd fail clearly, and promptly.
        started = time.monotonic()
        with pytest.raises(ConnectionError) as e:
            a.put_name(kept, "during")
        assert "cannot bind name 'during'" in str(e.value)
        assert "etcd unreachable" in str(e.value)
        assert c.etcd.endpoint in str(e.value)
        with pytest.raises(ConnectionError, match="etcd"):
            b.get_name("before")
        with pytest.raises(ConnectionError, match="etcd"):
            b.get_name("before", wait=True, timeout=5)
        with pytest.raises(ConnectionError, match="etcd"):
            a.put("named", name="during")
        assert time.monotonic() - started < 15

        # What needs only the local daemon goes on.
        assert np.array_equal(a.get(kept), np.arange(1000))
        fresh = a.put({"k": 1})
        assert a.get(fresh) == {"k": 1}
        assert a.status()["objects"] >= 2
        doomed = a.put(np.zeros(3))  # never named nor persisted
        assert doomed in a.delete(doomed)

        c.etcd.restart()
        # No daemon restarted: both still registered under their ids, names
        # work again, and a waiter on node 2 is woken by node 1 again.
        assert d1.alive() and d2.alive()
        eventually(lambda: set(members(c)) == {id1, id2}, "both members back")
        a.put_name(fresh, "after")
        assert b.get_name("after") == fresh
        assert b.get_name("before") == kept
        got = {}
        waiter = threading.Thread(target=lambda: got.update(
            id=b.get_name("later", wait=True, timeout=PATIENCE)))
        waiter.start()
        time.sleep(0.3)
        a.put_name(kept, "later")
        waiter.join(PATIENCE + 5)
        assert got.get("id") == kept


def test_start_fails_clearly_without_etcd(make_cluster):
    c = make_cluster(1, etcd=False)
    with pytest.raises(RuntimeError) as e:
        c.start_daemon(1, ["--etcd", "127.0.0.1:1", "--cluster", "nowhere"],
                       timeout=15)
    assert "cannot join cluster 'nowhere': etcd unreachable" in str(e.value)


def test_cluster_info_lists_live_members(make_cluster):
    c = make_cluster(3)
    d = [join(c, k) for k in (1, 2, 3)]
    with connect(d[0]) as a, connect(d[2]) as b:
        clients = [connect(x) for x in d]
        ids = {x.instance_id for x in clients}
        gone = clients[1].instance_id
        for x in clients:
            x.close()
        info = a.cluster_info()
        assert info["cluster"] == CLUSTER and info["backend"] == "etcd"
        assert info["instance_id"] == a.instance_id
        assert {m["instance_id"] for m in info["members"]} == ids
        by_id = {m["instance_id"]: m for m in info["members"]}
        assert by_id[a.instance_id]["ipc_socket"] == d[0].socket
        assert by_id[a.instance_id]["arena_size"] == a.status()["arena_size"]
        assert a.status()["cluster"] == CLUSTER
        # Every member sees the same list.
        assert {m["instance_id"] for m in b.cluster_info()["members"]} == ids
        # A member that dies without a word leaves the list when its lease ends.
        d[1].process.kill()
        eventually(lambda: gone not in {m["instance_id"] for m in
                                        a.cluster_info()["members"]},
                   "a SIGKILLed member leaves cluster_info")


def test_local_daemon_is_a_cluster_of_one(make_cluster):
    c = make_cluster(1, etcd=False)
    d = c.start_daemon(1, [])
    with connect(d) as a:
        info = a.cluster_info()
        assert info["cluster"] == "" and info["backend"] == "local"
        assert [m["instance_id"] for m in info["members"]] == [a.instance_id]
        assert a.status()["cluster"] == ""


def test_members_carry_the_rpc_endpoint_others_reach_them_at(make_cluster):
    # The daemon listens before it registers, so the member list holds the
    # bound address and the port chosen for port 0.
    c = make_cluster(2)
    token = os.path.join(c.dir, "token")
    with open(token, "w") as f:
        f.write("cluster secret\n")
    os.chmod(token, 0o600)
    port_file = os.path.join(c.dir, "n1.port")
    address = c.node(1).address
    d1 = c.start_daemon(1, ["--etcd", c.etcd.endpoint, "--cluster", CLUSTER,
                            "--rpc", f"{address}:0", "--rpc-token", token,
                            "--rpc-port-file", port_file])
    with connect(d1) as a:
        me = a.status()["instance_id"]
        port = int(open(port_file).read())
        endpoint = members(c)[me]["rpc_endpoint"]
        assert endpoint == f"{address}:{port}"
        by_id = {m["instance_id"]: m for m in a.cluster_info()["members"]}
        assert by_id[me]["rpc_endpoint"] == endpoint
        with trellis.connect(endpoint, token="cluster secret") as remote:
            assert remote.status()["instance_id"] == me
