"""The extension's MessagePack decoder (python/src/tree_decode.cc) on trees
the daemon would not send but a damaged or hostile store could: cases its
fuzz target (python/src/tree_decode_fuzz.cc) found, each a regression test.
A frame-blocks decode must describe the same tree as the plain decode."""

import msgpack

from trellis import _core


def _pairs(items):
    """A MessagePack map of (key, encoded value) pairs, keys possibly
    repeated (which a dict cannot say)."""
    packer = msgpack.Packer()
    return packer.pack_map_header(len(items)) + b"".join(
        packer.pack(key) + value for key, value in items)


def _blob(nbytes, blob_id=7):
    return {"typename": "trellis::Blob", "id": blob_id, "nbytes": nbytes, "offset": 0}


def _column(offset, rows, blob):
    return {"typename": "trellis::Tensor",
            "fields": {"dtype": "<i8", "shape": [rows], "strides": [8], "offset": offset},
            "members": {"buffer": blob}}


def _frame(members_bytes, rows, labels):
    return _pairs([("typename", msgpack.packb("trellis::DataFrame")),
                   ("fields", msgpack.packb({"columns": labels, "num_rows": rows})),
                   ("members", members_bytes)])


def _block_columns(node):
    """{position: (dtype, offset, buffer node)} from a node's "_blocks"."""
    out = {}
    for buffer, dtype, offset, step, count, placement in node["_blocks"][0]:
        positions = (range(placement.start, placement.stop) if isinstance(placement, slice)
                     else placement)
        for k, position in enumerate(positions):
            out[position] = (dtype, offset + k * step, buffer)
    return out


def test_columns_sharing_a_blob_id_keep_their_own_buffer_nodes():
    """Two plain columns name blob 7 with different nodes (nbytes 64 and 32):
    each block column must carry its own node, as the plain decode has it
    (the fast path once gave both the first node)."""
    columns = {"column_0": _column(0, 2, _blob(64)), "column_1": _column(16, 2, _blob(32))}
    encoded = _frame(msgpack.packb(columns), 2, ["a", "b"])
    plain = _core.decode_tree(encoded)
    blocks = _block_columns(_core.decode_tree(encoded, frame_blocks=True))
    for position in (0, 1):
        node = plain["members"][f"column_{position}"]
        assert blocks[position] == ("<i8", node["fields"]["offset"], node["members"]["buffer"])


def test_a_repeated_fields_key_counts_as_in_a_dict():
    """A column node with "fields" twice: the last one counts, so the second
    map's missing offset is 0 (the fast path once kept the first's 800)."""
    first = {"dtype": "<i8", "shape": [2], "strides": [8], "offset": 800}
    second = {"dtype": "<i8", "shape": [2], "strides": [8]}
    column = _pairs([("typename", msgpack.packb("trellis::Tensor")),
                     ("fields", msgpack.packb(first)), ("fields", msgpack.packb(second)),
                     ("members", msgpack.packb({"buffer": _blob(1024)}))])
    members = _pairs([("column_0", column)])
    encoded = _frame(members, 2, ["a"])
    plain = _core.decode_tree(encoded)
    assert "offset" not in plain["members"]["column_0"]["fields"]
    blocks = _block_columns(_core.decode_tree(encoded, frame_blocks=True))
    assert blocks[0][:2] == ("<i8", 0)

    # Without a dtype in the last "fields", the column is not plain at all.
    column = _pairs([("typename", msgpack.packb("trellis::Tensor")),
                     ("fields", msgpack.packb(first)),
                     ("fields", msgpack.packb({"shape": [2], "strides": [8]})),
                     ("members", msgpack.packb({"buffer": _blob(1024)}))])
    got = _core.decode_tree(_frame(_pairs([("column_0", column)]), 2, ["a"]), frame_blocks=True)
    assert got["_blocks"] == ([], -1)
    assert got["members"]["column_0"]["fields"] == {"shape": [2], "strides": [8]}
