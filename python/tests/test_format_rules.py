"""The Python layer reads the tree format's rules from trellis._core.format
(src/common/tree_format.h), the same source as the daemon and C++: these
tests fail if a converter, numpy or the daemon disagrees with it."""

import numpy as np
import pandas as pd
import pytest

from trellis import _codec
from trellis._core import format as fmt

NODE_KEYS = {fmt.TYPENAME, fmt.ID, fmt.NBYTES, fmt.INSTANCE_ID, fmt.FIELDS, fmt.MEMBERS}
TENSOR_FIELDS = {fmt.TENSOR_DTYPE, fmt.TENSOR_SHAPE, fmt.TENSOR_STRIDES, fmt.TENSOR_OFFSET}

STORABLE = ["?", "i1", "<i2", ">i4", "<i8", "u1", "<u2", ">u4", "<u8", "<f2", "<f4",
            ">f8", "<c8", "<c16", "<M8[ns]", "<M8[D]", "<m8[us]", "<M8[10ns]", "S5",
            "<U3", "S1"]


@pytest.mark.parametrize("text", STORABLE)
def test_dtype_table_matches_numpy(text):
    dtype = np.dtype(text)
    assert dtype.kind in fmt.TENSOR_WRITE_KINDS
    assert fmt.item_size(dtype.str) == dtype.itemsize
    counts, per_count, max_block = fmt.DTYPE_KINDS[dtype.kind]
    if counts:
        assert dtype.itemsize // per_count in counts
    joinable = 0 < dtype.itemsize <= max_block
    if dtype.kind in "mM":
        joinable = joinable and np.datetime_data(dtype)[1] == 1  # "[ns]", not "[10ns]"
    assert fmt.block_item_size(dtype.str) == (dtype.itemsize if joinable else 0)


def test_dtypes_outside_the_table():
    for text in ["i8", "<i3", "<b2", "<M8ns", "<x8", "", "<i"]:
        assert fmt.item_size(text) is None, text
        assert fmt.block_item_size(text) == 0, text
    assert set(fmt.BLOCK_WRITE_KINDS) <= set(fmt.TENSOR_WRITE_KINDS)
    assert all(fmt.DTYPE_KINDS[k][2] > 0 for k in fmt.BLOCK_WRITE_KINDS)


def test_encoded_frame_uses_the_format_keys():
    frame = pd.DataFrame({"a": np.arange(3, dtype="<i8"), "b": np.ones(3),
                          "s": ["x", "y", "z"]})
    tree, packer = _codec.encode_root(frame)
    assert tree[fmt.TYPENAME] == fmt.DATAFRAME
    assert set(tree) == {fmt.TYPENAME, fmt.FIELDS, fmt.MEMBERS}
    fields, members = tree[fmt.FIELDS], tree[fmt.MEMBERS]
    assert fields[fmt.DATAFRAME_COLUMNS] == ["a", "b", "s"]
    assert fields[fmt.DATAFRAME_NUM_ROWS] == 3
    assert set(members) == {fmt.DATAFRAME_COLUMN_PREFIX + str(i) for i in range(3)} \
        | {fmt.DATAFRAME_INDEX}
    index = members[fmt.DATAFRAME_INDEX]
    assert index[fmt.TYPENAME] == fmt.RANGE_INDEX
    assert [index[fmt.FIELDS][k] for k in (fmt.RANGE_START, fmt.RANGE_STOP, fmt.RANGE_STEP)] \
        == [0, 3, 1]
    for i in range(2):
        column = members[fmt.DATAFRAME_COLUMN_PREFIX + str(i)]
        assert column[fmt.TYPENAME] == fmt.TENSOR
        assert set(column[fmt.FIELDS]) == TENSOR_FIELDS
        assert set(column[fmt.MEMBERS]) == {fmt.TENSOR_BUFFER}
        assert column[fmt.FIELDS][fmt.TENSOR_OFFSET] % fmt.ALIGN == 0
    assert members[fmt.DATAFRAME_COLUMN_PREFIX + "2"][fmt.TYPENAME] == fmt.STRING_COLUMN


def test_daemon_trees_use_the_format_keys(client):
    frame = pd.DataFrame({"a": np.arange(4, dtype="<f8"), "b": np.arange(4, dtype="<i4")})
    object_id = client.put(frame)
    tree, _lease = client._core.get_tree(object_id, frame_blocks=False)
    assert set(tree) == NODE_KEYS and tree[fmt.TYPENAME] == fmt.DATAFRAME
    column = tree[fmt.MEMBERS][fmt.DATAFRAME_COLUMN_PREFIX + "0"]
    assert set(column) == NODE_KEYS
    blob = column[fmt.MEMBERS][fmt.TENSOR_BUFFER]
    assert blob[fmt.TYPENAME] == fmt.BLOB
    assert set(blob) == {fmt.TYPENAME, fmt.ID, fmt.NBYTES, fmt.INSTANCE_ID, fmt.OFFSET}
    # The extension's reader joins these plain columns as blocks.
    blocks, max_position = client._core.get_tree(object_id, frame_blocks=True)[0]["_blocks"]
    assert max_position == 1 and len(blocks) == 2
    pd.testing.assert_frame_equal(client.get(object_id), frame)


def test_validator_rejects_bad_node_shapes():
    from trellis._core import InvalidArgument, decode_tree
    import msgpack

    good = {fmt.TYPENAME: "t::T", fmt.MEMBERS: {"m": {fmt.ID: 3}}}
    assert decode_tree(msgpack.packb(good)) == good
    bad = {fmt.TYPENAME: "t::T", fmt.MEMBERS: {"m": {fmt.FIELDS: {}}}}
    with pytest.raises(InvalidArgument, match="member 'm': a tree node needs a string"):
        decode_tree(msgpack.packb(bad))
    with pytest.raises(InvalidArgument, match="'fields' of a t::T node must be a map"):
        decode_tree(msgpack.packb({fmt.TYPENAME: "t::T", fmt.FIELDS: [1]}))
