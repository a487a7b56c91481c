"""A Vineyard program runs on trellis by changing its import (issue 14).

Each test uses the names as Vineyard's documentation shows them, with
``import trellis as vineyard``; docs/vineyard_compat.md is the table of what
matches and what differs.
"""

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

import trellis as vineyard
from trellis.core import (builder_context, default_builder_context,
                          default_resolver_context, resolver_context)
from trellis.core.builder import BuilderContext
from trellis.core.resolver import ResolverContext
from trellis.data import register_builtin_types
from trellis.data.pickle import PickledReader, PickledWriter

from cluster_fixture import make_cluster  # noqa: F401 (pytest fixture)


@pytest.fixture
def client(daemon):
    with vineyard.connect(daemon.socket) as c:
        yield c


# -- Client -------------------------------------------------------------------

def test_client_properties(client, daemon):
    assert client.connected
    assert client.ipc_socket == daemon.socket
    assert client.rpc_endpoint == ""
    assert client.version == vineyard.__version__
    assert isinstance(client.instance_id, int)
    assert client.is_ipc and not client.is_rpc
    status = client.status  # a property, as in Vineyard
    assert status.instance_id == client.instance_id
    assert status.memory_limit == status["arena_size"] > 0
    assert status.ipc_connections >= 1
    assert status.deployment == "local"
    assert client.status()["used"] == status.memory_usage  # and still callable
    cluster = client.meta
    assert list(cluster) == [client.instance_id]
    assert cluster[client.instance_id]["ipc_socket"] == daemon.socket
    with client.fork() as other:
        assert other.instance_id == client.instance_id and other is not client
    client.close()
    assert not client.connected


def test_get_object_and_metas(client):
    oid = client.put(np.arange(10, dtype=np.int64))
    obj = client.get_object(oid)
    assert obj.id == oid and obj.typename == "trellis::Tensor" and obj.nbytes == 80
    assert obj.islocal and not obj.isglobal and not obj.ispersist
    assert obj.meta["shape"] == [10]
    assert obj.member("buffer").typename == "trellis::Blob"
    client.persist(obj)  # an Object where an id goes, as in Vineyard
    assert client.get_object(oid).ispersist
    other = client.put("x")
    assert [o.id for o in client.get_objects([oid, other])] == [oid, other]
    metas = client.get_metas([oid, other])
    assert [m.typename for m in metas] == ["trellis::Tensor", "py::Str"]
    assert [m.id for m in client.list_metadatas("trellis::Ten*")] == [oid]
    assert [m.id for m in client.list_metadatas(r"py::S\w+", regex=True)] == [other]
    with pytest.raises(vineyard.InvalidException, match="regular expression"):
        client.list_metadatas("(", regex=True)
    with pytest.raises(vineyard.ObjectNotExistsException):
        client.get_object(vineyard.ObjectID(12345))


def test_exists_has_object_and_clear(client):
    oid = client.put({"a": np.ones(3)})
    client.put_name(oid, "kept")
    assert client.exists(oid) and client.has_object(oid)
    assert not client.exists(vineyard.ObjectID(999))
    assert client.clear() >= 1
    assert not client.exists(oid)
    assert client.status.objects == 0
    with pytest.raises(vineyard.ObjectNotExistsException):
        client.get_name("kept")


def test_names_and_object_name(client):
    oid = client.put([1, 2])
    name = vineyard.ObjectName("pair")
    client.put_name(oid, name)
    assert client.get_name(name) == oid
    assert client.get(name=name) == [1, 2]
    assert client.get(None, "pair") == [1, 2]  # Vineyard's positional name
    assert client.get(object_id=oid) == [1, 2]
    assert repr(name) == "ObjectName('pair')"
    with pytest.raises(vineyard.ObjectExistsException):
        client.put_name(client.put(3), "pair", overwrite=False)


def test_exceptions_are_trellis_errors_and_builtins():
    assert vineyard.ObjectNotExistsException is vineyard.ObjectNotFound
    assert issubclass(vineyard.ObjectNotExistsException, KeyError)
    assert issubclass(vineyard.ObjectExistsException, ValueError)
    assert issubclass(vineyard.NotEnoughMemoryException, MemoryError)
    assert issubclass(vineyard.ConnectionFailedException, ConnectionError)
    for name in vineyard._vineyard_names.__all__:
        if name.endswith("Exception"):
            assert issubclass(getattr(vineyard, name), vineyard.TrellisError)


def test_connect_failure_is_connection_failed(tmp_socket_dir):
    with pytest.raises(vineyard.ConnectionFailedException):
        vineyard.connect(tmp_socket_dir + "/nobody.sock", start=False)


# -- ObjectMeta built the Vineyard way ------------------------------------------

def test_object_meta_filled_and_created(client):
    builder = client.create_blob(5)
    memoryview(builder)[:] = b"hello"
    blob = builder.seal(client)
    part = vineyard.ObjectMeta()
    part["typename"] = "my::Part"
    part["k"] = 1
    meta = vineyard.ObjectMeta()
    meta["typename"] = "my::Pair"
    meta["label"] = "left"
    meta["shape"] = (2, 3)  # a tuple field is stored as a JSON list
    meta.nbytes = 5
    meta.add_member("buffer", blob)
    meta.add_member("part", part)  # a new member, made with its parent
    meta["other"] = blob.id  # an ObjectID value is a member
    assert meta.nbytes == 5 and meta["label"] == "left"
    with pytest.raises(vineyard.InvalidArgument, match="has no id"):
        meta.id
    stored = client.create_metadata(meta)
    assert stored.typename == "my::Pair" and stored.islocal and not stored.isglobal
    assert stored["label"] == "left" and stored["shape"] == [2, 3]
    assert stored.instance_id == client.instance_id
    assert stored.nbytes == 5 and stored.memory_usage == 5
    assert bytes(memoryview(stored.member("buffer").blob())) == b"hello"
    assert stored.member("part")["k"] == 1
    assert stored.get_member("other").id == blob.id
    assert "label" in stored and "missing" not in stored
    assert stored.get("missing", 7) == 7
    with pytest.raises(vineyard.InvalidArgument, match="immutable"):
        stored["label"] = "right"
    # The type has no resolver: get returns its metadata.
    assert client.get(stored.id)["label"] == "left"


def test_object_meta_bad_input(client):
    meta = vineyard.ObjectMeta()
    with pytest.raises(vineyard.InvalidArgument, match="no typename"):
        client.create_metadata(meta)
    with pytest.raises(vineyard.InvalidArgument, match="not a JSON value"):
        meta["x"] = object()
    with pytest.raises(vineyard.InvalidArgument, match="finite"):
        meta["x"] = float("nan")
    with pytest.raises(vineyard.InvalidArgument, match="a member is"):
        meta.add_member("m", "not an id")
    meta["typename"] = "my::Dangling"
    meta.add_member("m", vineyard.ObjectID(4242))
    with pytest.raises(vineyard.ObjectNotExistsException):
        client.create_metadata(meta)
    with pytest.raises(vineyard.InvalidArgument, match="takes an ObjectMeta"):
        client.create_metadata({"typename": "x"})
    assert client.status.objects == 0


def test_global_object_meta(client):
    chunks = [client.put(pd.DataFrame({"x": [i]}), persist=True) for i in range(2)]
    meta = vineyard.ObjectMeta(global_=True)
    meta["typename"] = "my::GlobalFrame"
    for i, chunk in enumerate(chunks):
        meta.add_member(f"chunk_{i}", chunk)
    stored = client.create_metadata(meta)
    assert stored.isglobal and not stored.islocal
    assert client.get_object(stored.id).ispersist
    assert client.gather(stored.id)["x"].tolist() == [0, 1]


# -- Blobs -------------------------------------------------------------------

def test_blob_builder_copy_seal_and_get_blobs(client):
    builder = client.create_blob(8)
    builder.copy(0, b"abcd")
    builder.copy(4, memoryview(b"efgh"))
    with pytest.raises(vineyard.InvalidArgument, match="overruns"):
        builder.copy(6, b"xyz")
    blob = builder.seal(client)
    assert blob.size == 8 and bytes(memoryview(blob)) == b"abcdefgh"
    empty = client.create_empty_blob()
    assert empty.size == 0
    got = client.get_blobs([blob.id, empty.id])
    assert [b.size for b in got] == [8, 0]
    aborted = client.create_blob(4)
    aborted.abort(client)
    assert not client.exists(aborted.id)


def test_remote_blob_builder(client, daemon):
    remote = vineyard.RemoteBlobBuilder(6)
    memoryview(remote)[:3] = b"abc"
    remote.copy(3, b"def")
    with pytest.raises(vineyard.InvalidArgument, match="overruns"):
        remote.copy(5, b"xy")
    meta = client.create_remote_blob(remote)
    assert meta.typename == "trellis::Blob"
    assert bytes(memoryview(client.get_blob(meta.id))) == b"abcdef"
    with pytest.raises(vineyard.InvalidArgument, match="RemoteBlobBuilder"):
        client.create_remote_blob(b"abc")


def test_remote_blob_builder_over_rpc(start_daemon):
    d = start_daemon(rpc="127.0.0.1:0")
    with vineyard.connect(d.rpc_endpoint) as remote, vineyard.connect(d.socket) as local:
        assert remote.rpc_endpoint == d.rpc_endpoint
        assert remote.ipc_socket == d.socket
        builder = vineyard.RemoteBlobBuilder(4)
        builder.copy(0, b"rpc!")
        meta = remote.create_remote_blob(builder)
        assert bytes(memoryview(local.get_blob(meta.id))) == b"rpc!"


# -- Builders and resolvers for user types -----------------------------------------

class Point:
    def __init__(self, x, y, weights):
        self.x, self.y, self.weights = x, y, weights


def build_point(client, value, builder, **kw):
    meta = vineyard.ObjectMeta()
    meta["typename"] = "my::Point"
    meta["x"], meta["y"] = value.x, value.y
    meta["tag"] = kw.get("tag", "")
    meta.add_member("weights", builder.run(client, value.weights))
    return client.create_metadata(meta)


def resolve_point(obj, resolver, **kw):
    meta = obj.meta
    return Point(meta["x"], meta["y"], resolver.run(obj.member("weights")))


@pytest.fixture
def point_registered():
    default_builder_context.register(Point, build_point)
    default_resolver_context.register("my::Point", resolve_point)
    yield
    default_builder_context.unregister(Point)
    default_resolver_context.unregister("my::Point")


def test_registered_builder_and_resolver(client, point_registered):
    oid = client.put(Point(1, 2, np.arange(3.0)), name="p", tag="t1")
    assert client.get_meta(oid)["tag"] == "t1"
    point = client.get(name="p")
    assert isinstance(point, Point) and (point.x, point.y) == (1, 2)
    assert point.weights.tolist() == [0.0, 1.0, 2.0]
    assert point.weights.ctypes.data in client.arena  # members stay zero-copy
    # Inside containers too.
    pair = client.get(client.put({"a": Point(3, 4, np.ones(2)), "b": "text"}))
    assert pair["a"].x == 3 and pair["b"] == "text"


def test_builder_and_resolver_contexts(client):
    seen = []

    def build_tuple(client, value, **kw):
        seen.append(value)
        meta = vineyard.ObjectMeta()
        meta["typename"] = "my::Tuple<int>"
        meta["items"] = list(value)
        return client.create_metadata(meta)

    with builder_context({tuple: build_tuple}), resolver_context(
            {"my::Tuple": lambda obj, **kw: ("resolved", *obj.meta["items"])}):
        oid = client.put((1, 2))
        assert client.get(oid) == ("resolved", 1, 2)  # "my::Tuple<int>" matches "my::Tuple"
    assert seen == [(1, 2)]
    assert client.put((3, 4)) != oid and client.get(client.put((3, 4))) == (3, 4)
    assert client.get(oid)["items"] == [1, 2]  # outside the block: no resolver
    # A single builder or resolver for one call.
    oid = client.put((5, 6), build_tuple)
    assert client.get(oid, resolver=lambda obj: obj.meta["items"]) == [5, 6]


def test_context_without_builtins_and_register_builtin_types(client):
    empty = BuilderContext()
    with pytest.raises(vineyard.UnsupportedType, match="no builder for a numpy.ndarray"):
        client.put(np.arange(3), builder=empty)
    register_builtin_types(empty, None)
    oid = client.put(np.arange(3), builder=empty)
    resolvers = ResolverContext()
    assert isinstance(client.get(oid, resolver=resolvers), vineyard.ObjectMeta)
    register_builtin_types(None, resolvers)
    assert client.get(oid, resolver=resolvers).tolist() == [0, 1, 2]


def test_failing_builder_leaves_store_unchanged(client):
    def broken(client, value, **kw):
        raise RuntimeError("builder broke")

    before = client.status.objects
    with builder_context({Point: broken}):
        with pytest.raises(RuntimeError, match="builder broke"):
            client.put(Point(0, 0, np.ones(1)))
    with pytest.raises(vineyard.InvalidArgument, match="unexpected arguments"):
        client.put(np.ones(2), tag="x")
    assert client.status.objects == before


# -- Values -----------------------------------------------------------------

def test_tuples_round_trip_as_tuples(client):
    value = (1, "a", (2.5, None), [3, (4,)], {"k": (5, 6)})
    got = client.get(client.put(value))
    assert got == value and type(got) is tuple and type(got[2]) is tuple
    assert type(got[3][1]) is tuple and type(got[4]["k"]) is tuple


def test_memoryviews_round_trip(client):
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    for view in (memoryview(b"bytes"), memoryview(array), memoryview(array[:, ::2]),
                 memoryview(b"")):
        got = client.get(client.put(view))
        assert isinstance(got, memoryview) and got.readonly
        assert got.format == view.format and got.shape == view.shape
        assert got.tobytes() == view.tobytes()
    got = client.get(client.put(memoryview(array)))
    assert np.frombuffer(got, dtype=np.int32).ctypes.data in client.arena  # zero-copy


def test_sparse_columns_stay_sparse(client):
    frame = pd.DataFrame({
        "ints": pd.arrays.SparseArray([0, 0, 3, 0, 5], fill_value=0),
        "floats": pd.arrays.SparseArray([np.nan, 1.5, np.nan, np.nan, 2.5]),
        "blocks": pd.arrays.SparseArray([0.0, 1.0, 1.0, 0.0, 0.0], fill_value=0.0, kind="block"),
        "dense": np.arange(5),
    })
    got = client.get(client.put(frame))
    assert got.dtypes.to_dict() == frame.dtypes.to_dict()
    assert got.equals(frame)  # pandas' sparse kernels run on the result
    assert got["blocks"].array.kind == "block"
    assert (got["ints"] + 1).tolist() == [1, 1, 4, 1, 6]
    assert client.get_meta(client.put(frame)).member("column_0").typename == \
        "trellis::SparseColumn"
    series = pd.Series(pd.arrays.SparseArray([1, 0, 0], fill_value=0), name="s")
    assert client.get(client.put(series)).equals(series)


def test_ndarray_valued_columns(client):
    cells = np.empty(3, dtype=object)
    for i in range(3):
        cells[i] = np.full((2, 2), float(i))
    frame = pd.DataFrame({"m": cells, "x": [1, 2, 3]})
    got = client.get(client.put(frame))
    assert [c.tolist() for c in got["m"]] == [c.tolist() for c in cells]
    assert got["m"][1].ctypes.data in client.arena  # rows of one shared tensor
    node = client.get_meta(client.put(frame)).member("column_0")
    assert node["shape"] == [3, 2, 2] and node["object_rows"] is True
    # Mixed shapes are still stored (pickled) and come back equal.
    cells[2] = np.zeros(3)
    got = client.get(client.put(pd.DataFrame({"m": cells})))
    assert got["m"][2].tolist() == [0.0, 0.0, 0.0]


def test_dataframe_metadata_in_vineyards_keys(client):
    frame = pd.DataFrame({"a": np.arange(4), "b": np.arange(4.0), "s": list("wxyz"),
                          "t": list("abcd"), 7: np.arange(4)})
    meta = client.get_meta(client.put(frame))
    assert json.loads(meta["columns_"]) == ["a", "b", "s", "t", 7]
    assert meta["__values_-size"] == 5
    assert json.loads(meta["__values_-key-4"]) == 7
    assert meta["partition_index_row_"] == 0
    obj = client.get_object(meta.id)
    for i, label in enumerate(frame.columns):
        column = default_resolver_context.run(obj.member(f"__values_-value-{i}"))
        assert list(column) == frame[label].tolist()
    assert default_resolver_context.run(obj.member("__values_-value-0")).ctypes.data \
        in client.arena
    assert list(default_resolver_context.run(meta.member("index_"))) == [0, 1, 2, 3]
    with pytest.raises(KeyError):
        meta["__values_-key-5"]
    tensor = client.get_meta(client.put(np.zeros((2, 3), dtype=np.float32)))
    assert json.loads(tensor["shape_"]) == [2, 3] and tensor["value_type_"] == "float32"
    assert tensor.member("buffer_").typename == "trellis::Blob"


# -- Pickled streams ---------------------------------------------------------

def test_pickled_stream_of_raw_bytes_from_a_file(client, tmp_path):
    path = tmp_path / "payload.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    with open(path, "rb") as f:
        reader = PickledReader(f.read())  # bytes travel without a header
    assert reader.store_size == 256000
    writer = PickledWriter()  # length not known up front
    while True:
        chunk = reader.read(4096)
        if not len(chunk):
            break
        writer.write(chunk)
    writer.close()
    assert isinstance(writer.value, memoryview)
    assert writer.value.tobytes() == path.read_bytes()
    assert reader.read(-1) == b""


def test_pickled_stream_through_a_blob(client):
    frame = pd.DataFrame({"x": np.arange(100000), "s": ["v"] * 100000})
    reader = PickledReader(frame)
    assert reader.value is frame
    writer = client.create_blob(reader.store_size)
    offset = 0
    while True:
        chunk = reader.read(1 << 16)
        if not len(chunk):
            break
        assert len(chunk) <= 1 << 16
        writer.copy(offset, chunk)
        offset += len(chunk)
    assert offset == reader.store_size
    blob = writer.seal(client)
    out = PickledWriter(blob.size)
    view = memoryview(blob)
    for start in range(0, blob.size, 1000):
        out.write(view[start:start + 1000])
    out.close()
    assert out.value.equals(frame)


def test_pickled_stream_bad_input():
    reader = PickledReader(np.arange(10))
    stream = b"".join(bytes(c) for c in iter(lambda: reader.read(100), b""))
    truncated = PickledWriter(len(stream))
    truncated.write(stream[:-5])
    with pytest.raises(vineyard.InvalidArgument, match="truncated"):
        truncated.close()
    with pytest.raises(vineyard.InvalidArgument, match="overruns"):
        PickledWriter(2).write(b"abc")
    with pytest.raises(vineyard.InvalidArgument, match="block_size"):
        reader.read(-2)


# -- A cluster of two (etcd) -------------------------------------------------

def test_cluster_view_and_objects_of_another_member(make_cluster):
    c = make_cluster(2)
    token = os.path.join(c.dir, "token")
    with open(token, "w") as f:
        f.write("compat-secret\n")
    os.chmod(token, 0o600)
    d1, d2 = (c.start_daemon(k, ["--etcd", c.etcd.endpoint, "--cluster", "compat",
                                 "--rpc", f"{c.address(k)}:0", "--rpc-token", token])
              for k in (1, 2))
    with vineyard.connect(d1.socket, start=False) as a, \
            vineyard.connect(d2.socket, start=False) as b:
        assert a.status.deployment == "distributed"
        deadline = time.monotonic() + 20
        while set(a.meta) != {a.instance_id, b.instance_id}:
            assert time.monotonic() < deadline, f"members: {a.meta}"
            time.sleep(0.05)
        assert a.meta[b.instance_id]["ipc_socket"] == d2.socket
        assert b.rpc_endpoint.startswith(c.address(2) + ":")
        oid = b.put(np.arange(5), persist=True)
        assert a.exists(oid)  # published by the other member
        obj = a.get_object(oid, fetch=True)
        assert obj.islocal and obj.typename == "trellis::Tensor"
        assert a.get(oid).tolist() == [0, 1, 2, 3, 4]
