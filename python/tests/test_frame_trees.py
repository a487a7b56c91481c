"""DataFrame trees written by hand (as a C++ producer or a damaged store
could write them): a get reads the plain columns as blocks (tree_decode.h)
and says what is wrong with a tree it cannot read, naming the member."""

import random

import numpy as np
import pandas as pd
import pytest

import trellis
from trellis import _codec

I8 = np.dtype("<i8")


def _column(offset, rows, dtype="<i8", stride=8):
    return {"typename": "trellis::Tensor",
            "fields": {"dtype": dtype, "shape": [rows], "strides": [stride], "offset": offset},
            "members": {"buffer": _codec.BLOB}}


def _frame_tree(labels, rows, columns):
    members = {f"column_{i}": node for i, node in columns.items()}
    members["index"] = {"typename": "trellis::RangeIndex",
                        "fields": {"start": 0, "stop": rows, "step": 1, "name": None}}
    return {"typename": "trellis::DataFrame",
            "fields": {"columns": labels, "num_rows": rows, "columns_name": None,
                       "columns_dtype": "object"},
            "members": members}


def _put_tree(client, tree, data):
    """Puts `tree` whose BLOB placeholders stand for a blob holding `data`."""
    writer = client._core.create_blob(data.nbytes)
    memoryview(writer)[:] = data.view(np.uint8).ravel()
    return client._core.create_object(tree, _codec.BLOB, writer, "", False, True)


def test_padded_columns_are_one_block_in_any_member_order(client):
    rows, step = 5, 64  # 40-byte columns 64 bytes apart, as C++ pads them
    data = np.zeros(4 * step // 8, dtype=I8)
    for c in range(4):
        data[c * 8:c * 8 + rows] = np.arange(rows) + 100 * c
    # column_2 is stored first: positions follow the offsets' order.
    order = [2, 0, 1, 3]
    tree = _frame_tree(list("abcd"), rows,
                       {position: _column(slot * step, rows) for slot, position in enumerate(order)})
    got = client.get(_put_tree(client, tree, data))
    assert len(got._mgr.blocks) == 1
    assert got._mgr.blocks[0].values.ctypes.data in client.arena
    for slot, position in enumerate(order):
        np.testing.assert_array_equal(got.iloc[:, position], np.arange(rows) + 100 * slot)


def test_uneven_offsets_split_into_blocks(client):
    rows = 4
    data = np.arange(16, dtype=I8)
    # Offsets 0, 32, 96: the third column breaks the 32-byte step.
    tree = _frame_tree(["x", "y", "z"], rows, {0: _column(0, rows), 1: _column(32, rows),
                                               2: _column(96, rows)})
    got = client.get(_put_tree(client, tree, data))
    assert len(got._mgr.blocks) == 2
    np.testing.assert_array_equal(got["x"], [0, 1, 2, 3])
    np.testing.assert_array_equal(got["y"], [4, 5, 6, 7])
    np.testing.assert_array_equal(got["z"], [12, 13, 14, 15])


def test_overlapping_columns_are_separate_blocks(client):
    """Columns 8 bytes apart overlap; each is its own block, values intact."""
    data = np.arange(6, dtype=I8)
    tree = _frame_tree(["p", "q"], 3, {0: _column(0, 3), 1: _column(8, 3)})
    got = client.get(_put_tree(client, tree, data))
    np.testing.assert_array_equal(got["p"], [0, 1, 2])
    np.testing.assert_array_equal(got["q"], [1, 2, 3])


def test_get_meta_and_unknown_parents_see_every_column(client):
    frame = pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0]})  # one column per block
    meta = client.get_meta(client.put(frame))
    assert {"column_0", "column_1", "index"} <= set(meta.members)
    # An object of a type Python does not know comes back as its metadata,
    # frames inside it in full.
    oid = _put_tree(client, {"typename": "example::Holder",
                             "members": {"frame": dict(meta.to_dict())}},
                    np.zeros(1, dtype=I8))
    holder = client.get(oid)
    assert isinstance(holder, trellis.ObjectMeta)
    inner = holder.member("frame")
    assert {"column_0", "column_1", "index"} <= set(inner.members)
    assert inner.member("column_1").fields["shape"] == [2]


@pytest.mark.parametrize("case, columns, message", [
    ("column past the labels", {0: _column(0, 2), 1: _column(16, 2), 2: _column(32, 2)},
     "column_2 but 2 columns"),
    ("missing column", {0: _column(0, 2)}, "lacks member column_1"),
    ("column of other length", {0: _column(0, 2), 1: _column(16, 3)}, "column_1 has 3 rows"),
    ("column outside its blob", {0: _column(0, 2), 1: _column(4096, 2)}, "do not fit"),
    ("unknown dtype", {0: _column(0, 2), 1: _column(16, 2, dtype="<i7", stride=7)}, "data type '<i7'"),
])
def test_malformed_frames_are_invalid_argument(client, case, columns, message):
    data = np.arange(8, dtype=I8)
    oid = _put_tree(client, _frame_tree(["a", "b"], 2, columns), data)
    with pytest.raises(trellis.InvalidArgument, match=message):
        client.get(oid)
    # Nothing else is harmed: the client and the daemon go on serving.
    assert client.get(client.put(np.arange(3))).tolist() == [0, 1, 2]


def test_bad_num_rows_and_range_index(client):
    data = np.arange(4, dtype=I8)
    tree = _frame_tree(["a"], 2, {0: _column(0, 2)})
    tree["fields"]["num_rows"] = "two"
    with pytest.raises(trellis.InvalidArgument, match="num_rows"):
        client.get(_put_tree(client, tree, data))
    tree = _frame_tree(["a"], 2, {0: _column(0, 2)})
    tree["members"]["index"]["fields"]["step"] = 0
    with pytest.raises(trellis.InvalidArgument, match="RangeIndex"):
        client.get(_put_tree(client, tree, data))


def test_damaged_tree_bytes_are_invalid_argument_never_a_crash(client):
    """The extension's MessagePack reader (python/src/tree_decode.cc) on
    truncated, overwritten and padded copies of a real frame tree: each
    decodes to some tree or raises InvalidArgument; nothing else escapes."""
    frame = pd.DataFrame({"a": np.arange(3), "b": np.arange(3.0), "c": np.ones(3, bool),
                          "s": ["x", "y", "z"]})
    tree, _ = client._core.get_tree(client.put(frame), frame_blocks=True)
    raw = tree["_raw"]
    whole = trellis._core.decode_tree(raw, frame_blocks=True)
    assert whole["_blocks"][1] == 2 and "column_3" in whole["members"]
    rng = random.Random(7)
    decoded = 0
    for i in range(4000):
        data = bytearray(raw)
        if i % 3 == 0:
            del data[rng.randrange(len(data)):]
        elif i % 3 == 1:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            at = rng.randrange(len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        try:
            trellis._core.decode_tree(bytes(data), frame_blocks=True)
            decoded += 1
        except trellis.InvalidArgument:
            pass
    assert 0 < decoded < 4000  # both outcomes were exercised


# ----------------------------------------------- blocks (as Python writes them)

def test_a_block_of_columns_is_one_node_and_comes_back_as_one_block(client):
    """Columns of one pandas block are one 2-d node, wherever they sit among
    the others; numeric blocks come back over shared memory, string blocks
    as one object block; columns of other kinds are nodes of their own."""
    n = 50
    frame = pd.DataFrame({
        "i0": np.arange(n), "f0": np.arange(n) / 2, "i1": np.arange(n) * 3,
        "s0": [f"a{i}" for i in range(n)], "i2": -np.arange(n),
        "s1": [None if i % 7 == 0 else f"b{i}" for i in range(n)],
        "f1": np.arange(n) / 4, "b0": np.arange(n) % 2 == 0,
        "s2": ["é" * (i % 3) for i in range(n)],
    })
    oid = client.put(frame)
    meta = client.get_meta(oid)
    kinds = {name: m.typename for name, m in meta.members.items()}
    # int64 x3, float64 x2, object x3: three blocks; the bool column alone.
    assert sorted(kinds) == ["block_0", "block_1", "block_2", "column_7", "index"]
    by_positions = {tuple(p): f"block_{k}" for k, p in enumerate(meta.fields["block_columns"])}
    assert kinds[by_positions[(0, 2, 4)]] == "trellis::Tensor"
    assert meta.members[by_positions[(0, 2, 4)]].fields["shape"] == [3, n]
    assert kinds[by_positions[(3, 5, 8)]] == "trellis::StringColumn"
    got = client.get(oid)
    pd.testing.assert_frame_equal(got, frame, check_exact=True)
    for block in got._mgr.blocks:
        if block.dtype.kind in "if":
            assert block.values.ctypes.data in client.arena
    assert len(got._mgr.blocks) == 4


def test_object_blocks_of_mixed_markers_or_values_are_stored_column_by_column(client):
    frame = pd.DataFrame({"a": ["x", None, "z"], "b": ["x", np.nan, "z"],
                          "c": ["x", 3, b"y"], "d": ["p", "q", "r"]})
    oid = client.put(frame)
    meta = client.get_meta(oid)
    assert "block_columns" not in meta.fields
    assert meta.member("column_2").typename == "py::Pickle"
    got = client.get(oid)
    pd.testing.assert_frame_equal(got, frame)
    assert got["a"][1] is None and np.isnan(got["b"][1])


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"a": np.arange(0), "b": np.arange(0)}),
    pd.DataFrame({"a": [], "b": []}, dtype=object),
    pd.DataFrame(np.arange(12).reshape(3, 4), columns=[10, 20, 30, 40]),
    pd.DataFrame(np.arange(12.0).reshape(3, 4)).iloc[:, ::-1],
])
def test_empty_and_reordered_blocks_round_trip(client, frame):
    got = client.get(client.put(frame))
    pd.testing.assert_frame_equal(got, frame)


def _block(offset, columns, rows, dtype="<i8"):
    item = np.dtype(dtype).itemsize
    return {"typename": "trellis::Tensor",
            "fields": {"dtype": dtype, "shape": [columns, rows],
                       "strides": [rows * item, item], "offset": offset},
            "members": {"buffer": _codec.BLOB}}


def _block_frame(labels, rows, block_columns, members):
    tree = _frame_tree(labels, rows, {})
    tree["fields"]["block_columns"] = block_columns
    tree["members"].update(members)
    return tree


def test_a_hand_written_block_frame_reads_rows_as_columns(client):
    data = np.arange(12, dtype=I8)
    tree = _block_frame(["a", "b", "c"], 4, [[2, 0]], {"block_0": _block(0, 2, 4),
                                                       "column_1": _column(64, 4)})
    got = client.get(_put_tree(client, tree, data))
    assert got["c"].tolist() == [0, 1, 2, 3] and got["a"].tolist() == [4, 5, 6, 7]
    assert got["b"].tolist() == [8, 9, 10, 11]


@pytest.mark.parametrize("block_columns, members, message", [
    ("all", {"block_0": _block(0, 2, 2)}, "block_columns is not a list"),
    ([[0, 2]], {"block_0": _block(0, 2, 2)}, "block_columns\\[0\\] is not a list of positions"),
    ([[0, -1]], {"block_0": _block(0, 2, 2)}, "not a list of positions"),
    ([[0, 10 ** 12]], {"block_0": _block(0, 2, 2)}, "not a list of positions"),
    ([[]], {}, "not a list of positions"),
    ([[0, 1]], {}, "lacks member block_0"),
    ([[0, 1]], {"block_0": _block(0, 3, 2)}, "block_0 has shape \\[3, 2\\], not \\[2, 2\\]"),
    ([[0, 1]], {"block_0": _column(0, 2)}, "block_0 has shape \\[2\\]"),
    ([[0, 1]], {"block_0": {"typename": "py::None"}}, "not a 2-d Tensor or StringColumn"),
    ([[0], [0, 1]], {"block_0": _block(0, 1, 2), "block_1": _block(16, 2, 2)},
     "exactly once"),
    # A plain column_1 is read as a block of its own (tree_decode.h), so the
    # column is placed twice; a column of another kind is caught by name.
    ([[0, 1]], {"block_0": _block(0, 2, 2), "column_1": _column(0, 2)}, "exactly once"),
    ([[0, 1]], {"block_0": _block(0, 2, 2), "column_1": {"typename": "py::None"}},
     "column_1 too"),
    ([[1]], {"block_0": _block(0, 1, 2)}, "lacks member column_0"),
    ([[0, 1]], {"block_0": _block(4096, 2, 2)}, "does not fit"),
])
def test_malformed_blocks_are_invalid_argument(client, block_columns, members, message):
    data = np.arange(8, dtype=I8)
    oid = _put_tree(client, _block_frame(["a", "b"], 2, block_columns, members), data)
    with pytest.raises(trellis.InvalidArgument, match=message):
        client.get(oid)
    assert client.get(client.put(np.arange(3))).tolist() == [0, 1, 2]


def test_a_string_block_must_say_its_shape(client):
    frame = pd.DataFrame({"a": ["x", "y"], "b": ["z", "w"]})
    meta = client.get_meta(client.put(frame))
    block = meta.member("block_0")
    assert block.fields["shape"] == [2, 2] and block.fields["length"] == 4
    # The same strings claiming another shape are refused, not reshaped.
    bad = dict(meta.to_dict())
    bad_block = dict(bad["members"]["block_0"])
    bad_block["fields"] = {**bad_block["fields"], "shape": [4, 1]}
    bad["members"] = {**bad["members"], "block_0": bad_block}
    oid = client._core.create_object(_strip_ids(bad), _codec.BLOB, None, "", False, True)
    with pytest.raises(trellis.InvalidArgument, match="block_0 is not a 2-d"):
        client.get(oid)


def _strip_ids(node):
    """A gotten tree as a tree to build again: new nodes, blobs referenced."""
    if node.get("typename") == "trellis::Blob":
        return {"id": node["id"]}
    out = {"typename": node["typename"]}
    if "fields" in node:
        out["fields"] = node["fields"]
    if "members" in node:
        out["members"] = {k: _strip_ids(v) for k, v in node["members"].items()}
    return out
