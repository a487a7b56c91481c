"""Client.locate: where objects live and how big they are, read from the
daemon and the cluster metadata without fetching or holding anything (what
the flow executors place steps by). One daemon, then a two-node cluster
(cluster_fixture: real hosts in network namespaces and a real etcd)."""

import numpy as np
import pytest

import trellis
from cluster_fixture import make_cluster  # noqa: F401 (pytest fixture)
from test_fetch import connect, join

MiB = 1 << 20


def test_one_daemon_is_a_cluster_of_one(client):
    oid = client.put(np.zeros(MiB, dtype=np.uint8), name="zeros")
    small = client.put(b"abc")
    me = client.status()["instance_id"]
    by_name, by_id, mixed_small = (client.locate(["zeros"]),
                                   client.locate([oid]),
                                   client.locate([small, "zeros"]))
    assert by_name == by_id
    [entry] = by_name
    assert entry["id"] == int(oid)
    assert entry["here"] is True
    assert entry["instance_id"] == me
    assert entry["nbytes"] >= MiB
    assert mixed_small[1] == entry
    assert mixed_small[0]["id"] == int(small) and mixed_small[0]["here"]
    assert client.locate([]) == []
    assert client.status()["held_bytes"] == 0


def test_unknown_keys_and_wrong_arguments_are_named(client):
    with pytest.raises(trellis.ObjectNotFound, match="nobody-made-this"):
        client.locate(["nobody-made-this"])
    with pytest.raises(trellis.InvalidArgument, match="list of names or ids"):
        client.locate("zeros")
    gone = client.put(b"x")
    client.delete(gone)
    with pytest.raises(trellis.ObjectNotFound):
        client.locate([gone])


def test_two_nodes_say_which_node_holds_what(make_cluster):
    c = make_cluster(2)
    d1, d2 = join(c, 1), join(c, 2)
    with connect(d1) as a, connect(d2) as b:
        one, two = a.status()["instance_id"], b.status()["instance_id"]
        a.put(np.ones(2 * MiB, dtype=np.uint8), name="on-a", persist=True)
        b.put(np.ones(MiB, dtype=np.uint8), name="on-b")

        [from_a, from_b] = a.locate(["on-a", "on-b"])
        assert (from_a["instance_id"], from_a["here"]) == (one, True)
        assert from_a["nbytes"] >= 2 * MiB
        # Not published by b: a learns only whose it is.
        assert (from_b["instance_id"], from_b["here"]) == (two, False)

        [seen_by_b] = b.locate(["on-a"])
        assert (seen_by_b["instance_id"], seen_by_b["here"]) == (one, False)
        assert seen_by_b["nbytes"] == from_a["nbytes"]  # published: sized

        # A global object: each chunk says which member holds it.
        ca = a.put(np.ones(MiB, dtype=np.uint8), persist=True)
        cb = b.put(np.ones(MiB // 2, dtype=np.uint8), persist=True)
        a.put_global([ca, cb], name="both")
        [g] = b.locate(["both"])
        assert g["global"] is True
        homes = {ch["id"]: (ch["instance_id"], ch["here"]) for ch in g["chunks"]}
        assert homes == {int(ca): (one, False), int(cb): (two, True)}
