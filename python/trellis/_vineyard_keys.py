"""Vineyard's metadata keys over trellis's trees, for code that reads them.

Vineyard's DataFrame metadata is flat: ``columns_`` (the labels as a JSON
string), ``__values_-size``, ``__values_-key-<i>`` (label i, JSON) and the
member ``__values_-value-<i>`` (column i), ``index_``, the partition indexes.
Its Tensor has ``shape_`` (JSON), ``value_type_`` and the member
``buffer_``. A trellis tree keeps other keys (docs/format.md); ``ObjectMeta``
answers Vineyard's with these functions, computed from the tree. Column i of
a block (``block_<k>``) is synthesized as a node of its own over the same
buffer, so resolving it stays zero-copy.
"""

import json

from trellis._core import format as fmt

_VALUES_KEY = "__values_-key-"
_VALUES_VALUE = "__values_-value-"


def field(tree, key):
    """The value of Vineyard's key `key` in `tree`; KeyError if none."""
    typename = tree.get(fmt.TYPENAME)
    fields = tree.get(fmt.FIELDS, {})
    if typename == fmt.DATAFRAME:
        columns = fields.get(fmt.DATAFRAME_COLUMNS, [])
        if key == "columns_":
            return json.dumps(columns)
        if key == "__values_-size":
            return len(columns)
        if key.startswith(_VALUES_KEY):
            return json.dumps(columns[_position(key, _VALUES_KEY, len(columns))])
        if key in ("partition_index_row_", "partition_index_column_", "row_batch_index_"):
            return 0  # a trellis DataFrame is one partition
    elif typename == fmt.TENSOR:
        if key == "shape_":
            return json.dumps(fields.get("shape", []))
        if key == "value_type_":
            import numpy as np

            return np.dtype(fields["dtype"]).name
        if key == "partition_index_":
            return "[]"
    raise KeyError(key)


def member(tree, name):
    """The node of Vineyard's member `name` of `tree`; KeyError if none."""
    typename = tree.get(fmt.TYPENAME)
    members = tree.get(fmt.MEMBERS, {})
    if typename == fmt.DATAFRAME:
        if name == "index_":
            return members[fmt.DATAFRAME_INDEX]
        if name.startswith(_VALUES_VALUE):
            columns = tree.get(fmt.FIELDS, {}).get(fmt.DATAFRAME_COLUMNS, [])
            return column_node(tree, _position(name, _VALUES_VALUE, len(columns)))
    elif typename == fmt.TENSOR and name == "buffer_":
        return members["buffer"]
    raise KeyError(name)


def _position(key, prefix, count):
    text = key[len(prefix):]
    if not text.isdigit() or int(text) >= count:
        raise KeyError(key)
    return int(text)


def column_node(tree, i):
    """Column i of a DataFrame tree as a node: its ``column_<i>``, or its
    row of the block that holds it."""
    members = tree.get(fmt.MEMBERS, {})
    own = members.get(f"{fmt.DATAFRAME_COLUMN_PREFIX}{i}")
    if own is not None:
        return own
    fields = tree.get(fmt.FIELDS, {})
    for k, positions in enumerate(fields.get(fmt.DATAFRAME_BLOCK_COLUMNS, [])):
        if i in positions:
            block = members[f"{fmt.DATAFRAME_BLOCK_PREFIX}{k}"]
            return _block_row(block, positions.index(i), fields[fmt.DATAFRAME_NUM_ROWS])
    raise KeyError(f"{_VALUES_VALUE}{i}")


def _block_row(block, row, num_rows):
    block_fields = block[fmt.FIELDS]
    if block.get(fmt.TYPENAME) == fmt.TENSOR:
        strides = block_fields["strides"]
        fields = {"dtype": block_fields["dtype"], "shape": [num_rows],
                  "strides": [strides[1]],
                  "offset": block_fields.get("offset", 0) + row * strides[0]}
        return {fmt.TYPENAME: fmt.TENSOR, fmt.FIELDS: fields, fmt.MEMBERS: block[fmt.MEMBERS]}
    # A string block: the block with the row to take (decoded, then sliced).
    return {**block, fmt.FIELDS: {**block_fields, "block_row": row}}
