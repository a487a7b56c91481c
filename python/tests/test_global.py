"""Global objects: one object whose chunks live on several members of a
cluster (docs/format.md, "Global objects"), on real hosts (cluster_fixture,
as test_fetch.py) and on a daemon alone (a cluster of one).

put_global on any member makes it; get on any member gives the chunk list
with where each chunk lives, without moving a byte; gather fetches the
chunks that are elsewhere, once, and joins them into one local DataFrame;
a chunk that is not persisted is refused naming it; a chunk whose member
died is reported unavailable, naming the member."""

import numpy as np
import pandas as pd
import pytest

import trellis
from cluster_fixture import make_cluster  # noqa: F401 (pytest fixture)
from test_fetch import connect, eventually, frame, join


def test_a_dataframe_in_chunks_on_three_nodes_is_one_object(make_cluster):
    c = make_cluster(3)
    daemons = [join(c, k) for k in (1, 2, 3)]
    clients = [connect(d) for d in daemons]
    try:
        df = frame(11_000)
        # 11 chunks round-robin over the nodes: chunk_10 must come last.
        parts = [df.iloc[i * 1000:(i + 1) * 1000] for i in range(11)]
        ids = [clients[i % 3].put(p, persist=True) for i, p in enumerate(parts)]
        instances = [cl.instance_id for cl in clients]
        gid = clients[2].put_global(ids, name="sales")

        # Seen from node 1, by name: the chunks and where they are.
        g = clients[0].get(name="sales")
        assert isinstance(g, trellis.GlobalObject)
        assert g.id == gid
        assert g.typename == "trellis::GlobalDataFrame"
        assert g.fields["partitions"] == 11
        assert [chunk.id for chunk in g] == ids
        assert [chunk.instance_id for chunk in g] == [instances[i % 3] for i in range(11)]
        assert all(chunk.typename == "trellis::DataFrame" for chunk in g)
        assert [chunk.fields["num_rows"] for chunk in g] == [1000] * 11
        assert g.locations() == {instances[k]: ids[k::3] for k in range(3)}
        assert g.nbytes == sum(chunk.nbytes for chunk in g)
        meta = clients[0].get_meta(gid)
        assert meta.is_global and meta.instance_id == instances[2]
        assert clients[0].status()["fetch_count"] == 0  # nothing moved

        # Gathered on node 2: its own chunks read in place, the 7 others
        # fetched once each; a second gather moves nothing.
        joined = clients[1].gather(name="sales")
        pd.testing.assert_frame_equal(joined, df)
        assert clients[1].status()["fetch_count"] == 7
        pd.testing.assert_frame_equal(g.gather(clients[1]), df)
        assert clients[1].status()["fetch_count"] == 7

        # Node 1 dies: node 3, which fetched nothing, cannot gather, and
        # the error names the member that held the chunks.
        daemons[0].process.kill()
        daemons[0].process.wait()

        def reported_gone():
            try:
                clients[2].gather(gid)
            except trellis.ObjectNotFound as e:
                return "not a member" in str(e) and f"instance {instances[0]}" in str(e)
            except trellis.DaemonNotReachable:
                return False  # listed until its lease ends, not answering
            raise AssertionError("gathered chunks of a dead node")

        eventually(reported_gone, "chunks of the dead node reported unavailable")
        # The global object itself is intact, and node 2 still gathers
        # from its replicas.
        assert [chunk.id for chunk in clients[2].get(gid)] == ids
        pd.testing.assert_frame_equal(clients[1].gather(gid), df)
    finally:
        for cl in clients:
            cl.close()


def test_a_chunk_not_persisted_where_it_was_made_is_refused(make_cluster):
    c = make_cluster(2)
    d1, d2 = join(c, 1), join(c, 2)
    with connect(d1) as a, connect(d2) as b:
        private = a.put(np.arange(10))
        mine = b.put(np.arange(5))
        with pytest.raises(trellis.ObjectNotFound) as e:
            b.put_global([mine, private], name="half")
        assert "member 'chunk_1'" in str(e.value)
        assert str(private) in str(e.value)
        assert "persist" in str(e.value)
        with pytest.raises(trellis.ObjectNotFound):
            b.get_name("half")
        a.persist(private)
        g = b.get(b.put_global([mine, private]))
        assert g.typename == "trellis::GlobalTensor"
        np.testing.assert_array_equal(g.gather(), np.concatenate([np.arange(5), np.arange(10)]))


def test_on_one_daemon_a_global_object_is_a_list_of_its_chunks(client):
    arrays = [np.arange(i * 10, (i + 1) * 10) for i in range(3)]
    ids = [client.put(a) for a in arrays]
    gid = client.put_global(ids, name="all", fields={"source": "test"})
    g = client.get(name="all")
    assert len(g) == 3 and g.typename == "trellis::GlobalTensor"
    assert g.fields == {"partitions": 3, "source": "test"}
    assert g.locations() == {client.instance_id: ids}
    np.testing.assert_array_equal(client.gather(gid), np.arange(30))
    assert client.status()["fetch_count"] == 0

    mixed = client.get(client.put_global([ids[0], client.put({"a": 1})]))
    assert mixed.typename == "trellis::GlobalObject"
    assert len(mixed.gather()) == 2

    with pytest.raises(trellis.InvalidArgument):
        client.put_global([])
    with pytest.raises(trellis.InvalidArgument):
        client.gather(ids[0])  # not a global object
    with pytest.raises(trellis.ObjectNotFound):
        client.put_global([trellis.ObjectID(int(ids[0]) + 10**6)])

    assert client.delete(gid) == [gid]
    with pytest.raises(trellis.ObjectNotFound):
        client.get(gid)
    with pytest.raises(trellis.ObjectNotFound):
        client.get_name("all")
    np.testing.assert_array_equal(client.get(ids[1]), arrays[1])  # chunks stay
