"""pandas DataFrame, Series and Index <-> trellis trees (docs/format.md).

A DataFrame is a trellis::DataFrame that C++ reads as well. A pandas block
of two or more columns is one node, ``block_<k>``: a 2-d trellis::Tensor
(numeric) or a 2-d trellis::StringColumn (object columns of str), its rows
the columns the field ``block_columns`` lists. Other columns are one node
each (``column_<i>``). A get rebuilds each block as one 2-d pandas block, over
shared memory for numbers, so numeric columns are neither copied nor
consolidated, and a frame of thousands of columns is a handful of nodes
(the daemon's cost, and a small frame's, is per node). Frames C++ wrote
(one ``column_<i>`` each) are read as blocks too: trellis._core finds their
evenly spaced runs while decoding the tree (python/src/tree_decode.h).

Other column kinds:
  datetime64 (tz-aware: field ``tz``), timedelta64   trellis::Tensor
  object columns of str, pandas "string"            trellis::StringColumn
  categorical                                       trellis::Categorical
  nullable Int*/UInt*/Float*/boolean                trellis::NullableColumn
  sparse (numeric subtype, scalar fill value)       trellis::SparseColumn
  object columns of same-shape numeric ndarrays     trellis::Tensor [rows, ...]
                                                    with field object_rows
  anything else (period, interval, mixed)           py::Pickle (per column)
Row indexes: RangeIndex -> trellis::RangeIndex, MultiIndex -> py::Pickle,
others -> their values as a column node with fields ``name`` and ``freq``.
Frames whose column labels are not plain JSON values (None, bool, int,
float, str; not a MultiIndex) are pickled whole.
"""

import functools

import numpy as np
import pandas as pd
from pandas.core.arrays.masked import BaseMaskedArray
from pandas.core.internals import BlockManager
from pandas.core.internals.api import make_block

from trellis import _codec, _numpy
from trellis._core import InvalidArgument, decode_strings, scan_strings
from trellis._core import format as fmt
from trellis._pickle import PICKLE, encode_pickle

try:  # pandas' block constructor without its checks: decode checks instead
    from pandas._libs.internals import BlockPlacement
    from pandas.core.internals.blocks import new_block as _new_block
except ImportError:  # a pandas without it: the pseudo-public make_block
    _new_block = None

DATAFRAME = fmt.DATAFRAME
SERIES = fmt.SERIES
RANGE_INDEX = fmt.RANGE_INDEX
STRINGS = fmt.STRING_COLUMN
CATEGORICAL = fmt.CATEGORICAL
NULLABLE = fmt.NULLABLE_COLUMN
SPARSE = "trellis::SparseColumn"  # written and read by Python only
_TYPENAME, _FIELDS, _MEMBERS = fmt.TYPENAME, fmt.FIELDS, fmt.MEMBERS
_COLUMNS, _NUM_ROWS, _INDEX = fmt.DATAFRAME_COLUMNS, fmt.DATAFRAME_NUM_ROWS, fmt.DATAFRAME_INDEX
_COLUMN_PREFIX = fmt.DATAFRAME_COLUMN_PREFIX
_BLOCK_PREFIX, _BLOCK_COLUMNS = fmt.DATAFRAME_BLOCK_PREFIX, fmt.DATAFRAME_BLOCK_COLUMNS
_node = _codec.node

_BLOCK_KINDS = frozenset(fmt.BLOCK_WRITE_KINDS)  # numpy blocks stored region-per-block
_LABEL_TYPES = (str, int, float, bool, type(None))
# dtype of a column Index stored as labels -> its name in "columns_dtype".
_COLUMN_INDEX_DTYPES = {np.dtype(name): name for name in ("object", "int64", "uint64", "float64")}


def _plain(label):
    """True if `label` is stored exactly as a JSON value."""
    t = type(label)
    if t is int:
        return -(1 << 63) <= label < (1 << 64)
    return t in _LABEL_TYPES


# ------------------------------------------------------------ pandas internals
# The few internals used, in one place: block access on put and building a
# frame from blocks on get (as pyarrow and Vineyard do) so no data is copied.

def _blocks(frame):
    """(values, column positions) of each block of `frame`."""
    return [(blk.values, blk.mgr_locs.as_array) for blk in frame._mgr.blocks]


def _column_values(frame, i):
    """The ndarray or ExtensionArray of column `i` (a view, no copy)."""
    return frame._mgr.iget_values(i)


def _object_index(values, name):
    """An object-dtype Index over a 1-d object array, without the
    inference pd.Index(values, dtype=object) runs (10x slower)."""
    simple_new = getattr(pd.Index, "_simple_new", None)
    if simple_new is not None:
        try:
            return simple_new(values, name=name)
        except TypeError:
            pass
    return pd.Index(values, dtype=object, name=name, copy=False)


def _make_block(values, placement):
    """A 2-d block of `values` (ndarray of shape (len(placement), rows) or a
    1-d ExtensionArray) at column positions `placement` (slice or list)."""
    if _new_block is not None and type(values) is np.ndarray:
        return _new_block(values, BlockPlacement(placement), ndim=2)
    return make_block(values, placement=placement, ndim=2)


def _frame_from_blocks(blocks, columns, index):
    """The DataFrame over `blocks` ((values, placement) pairs). The caller
    guarantees what pandas would verify: each column placed exactly once,
    every block `len(index)` rows long."""
    made = [_make_block(values, placement) for values, placement in blocks]
    manager = BlockManager(made, [columns, index], verify_integrity=False)
    if hasattr(pd.DataFrame, "_from_mgr"):  # pandas >= 2.1
        return pd.DataFrame._from_mgr(manager, axes=manager.axes)
    return pd.DataFrame(manager)


def _range_index(start, stop, step, name):
    """pd.RangeIndex(start, stop, step, name=name) for int arguments,
    without its argument coercion (a third of a narrow frame's get)."""
    if not (type(start) is int and type(stop) is int and type(step) is int) or step == 0:
        raise InvalidArgument(f"RangeIndex({start!r}, {stop!r}, {step!r}) is not valid")
    simple_new = getattr(pd.RangeIndex, "_simple_new", None)
    if simple_new is not None:
        try:
            return simple_new(range(start, stop, step), name=name)
        except TypeError:
            pass
    return pd.RangeIndex(start, stop, step, name=name)


# -------------------------------------------------------------------- encoding

def encode_column(values, packer):
    """The node of a 1-d column (ndarray or ExtensionArray)."""
    if isinstance(values, np.ndarray):
        if _numpy.storable(values.dtype) and values.dtype.kind not in "SU":
            return _numpy.tensor_node(values, packer)
        if values.dtype.kind == "O":
            node = _encode_strings(values, packer, "object")
            if node is None:
                node = _encode_array_rows(values, packer)
            if node is not None:
                return node
        return encode_pickle(values, packer)
    if isinstance(values, pd.arrays.DatetimeArray):
        extra = None
        if values.tz is not None:
            tz = str(values.tz)
            if pd.DatetimeTZDtype(values.dtype.unit, tz) != values.dtype:
                return encode_pickle(values, packer)  # tz not named by a string
            extra = {"tz": tz}
        return _numpy.tensor_node(values._ndarray, packer, extra)
    if isinstance(values, pd.arrays.TimedeltaArray):
        return _numpy.tensor_node(values._ndarray, packer)
    if isinstance(values, pd.Categorical):
        return _encode_categorical(values, packer)
    if isinstance(values, pd.arrays.SparseArray):
        node = _encode_sparse(values, packer)
        if node is not None:
            return node
    if isinstance(values, pd.arrays.StringArray):
        node = _encode_strings(values._ndarray, packer, "string")
        if node is not None:
            return node
    elif isinstance(values, BaseMaskedArray):
        return _encode_nullable(values, packer)
    elif isinstance(values, pd.arrays.PandasArray):
        return encode_column(values.to_numpy(), packer)
    return encode_pickle(values, packer)


def _encode_strings(values, packer, pandas_dtype, shape=None):
    """A StringColumn of the 1-d object array `values`, or None if it holds
    anything but str and one kind of missing marker. With `shape` (a block's
    [columns, rows]), the node says so: `values` are its columns one after
    the other."""
    enc = scan_strings(values, pd.NA)
    if enc is None:
        return None
    n = enc.length
    offsets_at = packer.region(enc.offsets_bytes)
    data_at = packer.region(enc.data_bytes)
    validity_at = packer.region(enc.validity_bytes) if enc.null_count else 0
    packer.on_write(lambda w: enc.write(w, offsets_at, data_at, validity_at))
    members = {
        "offsets": _numpy.tensor_at("<i8", [n + 1], [8], offsets_at, packer),
        "data": _numpy.tensor_at("|u1", [enc.data_bytes], [1], data_at, packer),
    }
    if enc.null_count:
        members["validity"] = _numpy.tensor_at(
            "|u1", [enc.validity_bytes], [1], validity_at, packer)
    fields = {"length": n, "null_count": enc.null_count,
              "missing": enc.missing, "pandas_dtype": pandas_dtype}
    if shape is not None:
        fields["shape"] = shape
    return _node(STRINGS, fields, members)


def _encode_array_rows(values, packer):
    """An object column whose every item is an ndarray of one numeric dtype
    and shape, as one Tensor of shape [rows, *item shape] (field
    object_rows); None for any other object column."""
    if len(values) == 0:
        return None
    first = values[0]
    if type(first) is not np.ndarray or not _numpy.storable(first.dtype) \
            or first.dtype.kind in "SUO":
        return None
    shape, dtype = first.shape, first.dtype
    for item in values:
        if type(item) is not np.ndarray or item.shape != shape or item.dtype != dtype:
            return None
    return _numpy.tensor_node(np.stack(values), packer, {"object_rows": True})


def _encode_sparse(values, packer):
    """A SparseColumn: the values that are not the fill value and their
    positions (int32); None (pickle it) for a non-numeric subtype or a fill
    value that is not a JSON scalar."""
    dtype = values.dtype
    if not _numpy.storable(dtype.subtype) or dtype.subtype.kind in "SUO":
        return None
    fill = dtype.fill_value
    fields = {"length": len(values), "kind": values.kind, "subtype": dtype.subtype.str}
    if isinstance(fill, (float, np.floating)) and np.isnan(fill):
        fields["fill_nan"] = True
        fill = None
    elif isinstance(fill, np.generic):
        fill = fill.item()
    if not isinstance(fill, _LABEL_TYPES):
        return None
    fields["fill_value"] = fill
    indices = np.ascontiguousarray(values.sp_index.to_int_index().indices, dtype=np.int32)
    return _node(SPARSE, fields, {"values": _numpy.tensor_node(values.sp_values, packer),
                                  "indices": _numpy.tensor_node(indices, packer)})


def _encode_categorical(values, packer):
    return _node(CATEGORICAL,
                 {"length": len(values), "ordered": bool(values.ordered)},
                 {"codes": _numpy.tensor_node(values.codes, packer),
                  "categories": encode_column(values.categories._values, packer)})


def _encode_nullable(values, packer):
    validity = np.packbits(~values._mask, bitorder="little")
    return _node(NULLABLE,
                 {"length": len(values), "pandas_dtype": str(values.dtype)},
                 {"values": _numpy.tensor_node(values._data, packer),
                  "validity": _numpy.tensor_node(validity, packer)})


def encode_index(index, packer):
    if type(index) is pd.RangeIndex and _plain(index.name):
        return _node(RANGE_INDEX,
                     {fmt.RANGE_START: index.start, fmt.RANGE_STOP: index.stop,
                      fmt.RANGE_STEP: index.step, "name": index.name})
    if isinstance(index, pd.MultiIndex) or not _plain(index.name):
        return encode_pickle(index, packer)
    node = encode_column(index._values, packer)
    fields = node.setdefault(_FIELDS, {})
    fields["name"] = index.name
    freq = getattr(index, "freqstr", None)
    if freq is not None:
        fields["freq"] = freq
    return node


def _encode_block(values, num_rows, packer):
    """The 2-d node of a pandas block's values (shape [columns, num_rows]),
    or None if the block's columns must be stored one by one."""
    if type(values) is not np.ndarray or values.ndim != 2:
        return None
    shape = [values.shape[0], num_rows]
    if values.dtype.kind in _BLOCK_KINDS:
        item = values.dtype.itemsize
        base = packer.add_array(values, c_order=True)
        return _numpy.tensor_at(values.dtype.str, shape, [num_rows * item, item], base, packer)
    if values.dtype.kind == "O":
        return _encode_strings(values.reshape(-1), packer, "object", shape)
    return None


def _plain_labels(columns, labels):
    """True if every column label is stored exactly as a JSON value."""
    if columns.dtype != object:  # int64, uint64, float64 Index
        return True
    if columns.inferred_type == "string":  # cached on the Index; C speed
        return True
    return all(_plain(label) for label in labels)


def encode_dataframe(frame, packer):
    columns = frame.columns
    columns_dtype = _COLUMN_INDEX_DTYPES.get(columns.dtype)
    if (columns_dtype is None or isinstance(columns, pd.MultiIndex)
            or not _plain(columns.name)):
        return None  # pickle the frame
    labels = columns.tolist()
    if not _plain_labels(columns, labels):
        return None
    num_rows = len(frame.index)
    members = {}
    block_columns = []
    for values, positions in _blocks(frame):
        node = _encode_block(values, num_rows, packer) if len(positions) > 1 else None
        if node is not None:
            members[_block_key(len(block_columns))] = node
            block_columns.append(positions.tolist())
            continue
        for position in positions:
            members[_column_key(position)] = encode_column(
                _column_values(frame, position), packer)
    members[_INDEX] = encode_index(frame.index, packer)
    fields = {_COLUMNS: labels, _NUM_ROWS: num_rows,
              "columns_name": columns.name, "columns_dtype": columns_dtype}
    if block_columns:
        fields[_BLOCK_COLUMNS] = block_columns
    if type(columns) is pd.RangeIndex:
        fields["columns_range"] = [columns.start, columns.stop, columns.step]
    return _node(DATAFRAME, fields, members)


def encode_series(series, packer):
    if not _plain(series.name):
        return None
    return _node(SERIES,
                 {"name": series.name, "length": len(series)},
                 {"values": encode_column(series._values, packer),
                  _INDEX: encode_index(series.index, packer)})


# -------------------------------------------------------------------- decoding

_MISSING = {"": None, "None": None, "nan": np.nan, "NA": pd.NA}


def decode_column(node, ctx):
    """The ndarray or ExtensionArray of a column node."""
    typename = node.get(_TYPENAME)
    if typename == _numpy.TENSOR:
        values = _numpy.decode_tensor(node, ctx)
        if node[_FIELDS].get("object_rows"):
            rows = np.empty(len(values), dtype=object)
            rows[:] = list(values)  # each row a read-only view of shared memory
            return rows
        tz = node[_FIELDS].get("tz")
        if tz is None:
            return values
        dtype = pd.DatetimeTZDtype(np.datetime_data(values.dtype)[0], tz)
        return pd.arrays.DatetimeArray(values, dtype=dtype, copy=False)
    if typename in (STRINGS, CATEGORICAL, NULLABLE, SPARSE):
        return _codec.DECODERS[typename](node, ctx)
    value = _codec.decode(node, ctx)
    if isinstance(value, (pd.Index, pd.Series)):
        return value._values
    return value


def decode_strings_column(node, ctx):
    fields, members = node[_FIELDS], node[_MEMBERS]
    offsets = _numpy.decode_tensor(members["offsets"], ctx)
    data = _numpy.decode_tensor(members["data"], ctx)
    validity = _numpy.decode_tensor(members["validity"], ctx) if "validity" in members else None
    pandas_dtype = fields.get("pandas_dtype", "object")
    missing = pd.NA if pandas_dtype == "string" else _MISSING[fields.get("missing", "")]
    values = decode_strings(offsets, data, validity, missing)
    if "block_row" in fields:  # one column of a block (trellis._vineyard_keys)
        values = values.reshape(fields["shape"])[fields["block_row"]]
    if pandas_dtype == "string":
        return pd.arrays.StringArray(values)
    return values


def decode_categorical(node, ctx):
    members = node[_MEMBERS]
    codes = _numpy.decode_tensor(members["codes"], ctx)
    categories = pd.Index(decode_column(members["categories"], ctx))
    dtype = pd.CategoricalDtype(categories, ordered=node[_FIELDS]["ordered"])
    return pd.Categorical.from_codes(codes, dtype=dtype)


def decode_nullable(node, ctx):
    fields, members = node[_FIELDS], node[_MEMBERS]
    values = _numpy.decode_tensor(members["values"], ctx)
    validity = _numpy.decode_tensor(members["validity"], ctx)
    mask = np.unpackbits(validity, count=fields["length"], bitorder="little") == 0
    dtype = pd.api.types.pandas_dtype(fields["pandas_dtype"])
    return dtype.construct_array_type()(values, mask)


def decode_sparse(node, ctx):
    """A SparseArray. Its values and positions are copied: pandas' sparse
    kernels (comparisons, arithmetic) need writable buffers."""
    from pandas._libs.sparse import IntIndex

    fields, members = node[_FIELDS], node[_MEMBERS]
    values = np.array(_numpy.decode_tensor(members["values"], ctx))
    indices = np.array(_numpy.decode_tensor(members["indices"], ctx), dtype=np.int32)
    length = fields["length"]
    if values.dtype.str != fields["subtype"] or len(values) != len(indices) \
            or (len(indices) and (indices.min() < 0 or indices.max() >= length)):
        raise InvalidArgument(f"{SPARSE} {node.get('id')}: values and positions do not match")
    index = IntIndex(length, indices)
    if fields.get("kind") == "block":
        index = index.to_block_index()
    fill = np.nan if fields.get("fill_nan") else fields["fill_value"]
    dtype = pd.SparseDtype(values.dtype, fill)
    return pd.arrays.SparseArray._simple_new(values, index, dtype)


def decode_index(node, ctx):
    if node.get(_TYPENAME) == RANGE_INDEX:
        f = node[_FIELDS]
        return _range_index(f.get(fmt.RANGE_START), f.get(fmt.RANGE_STOP),
                            f.get(fmt.RANGE_STEP), f.get("name"))
    if node.get(_TYPENAME) == PICKLE:  # e.g. a MultiIndex
        index = _codec.decode(node, ctx)
        return index if isinstance(index, pd.Index) else pd.Index(index)
    values = decode_column(node, ctx)
    fields = node.get(_FIELDS, {})
    freq = fields.get("freq")
    if freq is not None:
        kind = pd.DatetimeIndex if values.dtype.kind == "M" else pd.TimedeltaIndex
        return kind(values, freq=freq, name=fields.get("name"))
    return pd.Index(values, name=fields.get("name"), copy=False)


def _columns_index(fields, label_values=None):
    """The column labels' Index; `label_values` is fields["columns"] as an
    object array if the caller has one."""
    name = fields.get("columns_name")
    if "columns_range" in fields:
        start, stop, step = fields["columns_range"]
        return pd.RangeIndex(start, stop, step, name=name)
    dtype = fields.get("columns_dtype", "object")
    labels = fields[_COLUMNS]
    if dtype != "object":
        return pd.Index(labels, dtype=dtype, name=name)
    # An object array is 3x faster than Index(list) (which would also turn
    # a list of tuples into a MultiIndex).
    values = label_values
    if values is None:
        values = np.empty(len(labels), dtype=object)
        values[:] = labels
    return _object_index(values, name)


@functools.lru_cache(maxsize=256)
def _dtype(text):
    return np.dtype(text)


def _member_keys(prefix):
    """key(i) -> prefix + str(i), each made once."""
    keys = []

    def key(i):
        while len(keys) <= i:
            keys.append(f"{prefix}{len(keys)}")
        return keys[i]
    return key


_column_key = _member_keys(_COLUMN_PREFIX)
_block_key = _member_keys(_BLOCK_PREFIX)


def _numeric_blocks(planned, num_rows, ctx, node_id):
    """The 2-d blocks over shared memory that trellis._core planned for the
    frame's plain columns ("_blocks", see tree_decode.h); (values,
    placement) pairs."""
    blocks = []
    for buffer, dtype_str, offset, step, count, placement in planned:
        dtype = _dtype(dtype_str)
        try:
            values = np.ndarray((count, num_rows), dtype, buffer=ctx.blob(buffer),
                                offset=offset, strides=(step, dtype.itemsize))
        except (ValueError, TypeError) as e:
            raise InvalidArgument(
                f"DataFrame {node_id}: columns do not fit their buffer: {e}") from None
        blocks.append((values, placement))
    return blocks


def _block_placement(positions, count):
    """The pandas placement of a block_columns entry: a slice if the
    positions are consecutive, else the list; None if it is not a non-empty
    list of positions of `count` columns."""
    if type(positions) is not list or not positions:
        return None
    first, n = positions[0], len(positions)
    if (type(first) is int and 0 <= first and first + n <= count
            and positions == list(range(first, first + n))):  # compared in C
        return slice(first, first + n)
    if all(type(p) is int and 0 <= p < count for p in positions):
        return positions
    return None


def _stored_blocks(fields, members, num_rows, count, ctx, node_id):
    """The frame's block_<k> members as (values, placement) pairs."""
    block_columns = fields.get(_BLOCK_COLUMNS)
    if block_columns is None:
        return []
    if type(block_columns) is not list:
        raise InvalidArgument(f"DataFrame {node_id}: block_columns is not a list")
    blocks = []
    for k, positions in enumerate(block_columns):
        placement = _block_placement(positions, count)
        if placement is None:
            raise InvalidArgument(
                f"DataFrame {node_id}: block_columns[{k}] is not a list of positions "
                f"of its {count} columns")
        child = members.get(_block_key(k))
        if child is None:
            raise InvalidArgument(f"DataFrame {node_id} lacks member block_{k}")
        shape = (len(positions), num_rows)
        typename = child.get(_TYPENAME)
        if typename == _numpy.TENSOR:
            values = _numpy.decode_tensor(child, ctx)
        elif (typename == STRINGS and child.get(_FIELDS, {}).get("shape") == list(shape)
              and child[_FIELDS].get("pandas_dtype", "object") == "object"):
            values = decode_strings_column(child, ctx)
            if len(values) != shape[0] * shape[1]:
                raise InvalidArgument(
                    f"DataFrame {node_id}: block_{k} holds {len(values)} strings, "
                    f"not {shape[0]} x {shape[1]}")
            values = values.reshape(shape)
        else:
            raise InvalidArgument(
                f"DataFrame {node_id}: block_{k} is not a 2-d Tensor or StringColumn "
                f"of shape {list(shape)}")
        if values.shape != shape:
            raise InvalidArgument(
                f"DataFrame {node_id}: block_{k} has shape {list(values.shape)}, "
                f"not {list(shape)}")
        blocks.append((values, placement))
    return blocks


def _positions(placement):
    return range(placement.start, placement.stop) if type(placement) is slice else placement


def _places_each_once(blocks, count):
    """True if the placements of `blocks` hold each of `count` positions once."""
    if sum(len(_positions(p)) for _, p in blocks) != count:
        return False
    if all(type(p) is slice for _, p in blocks):  # the usual case: a tiling
        end = 0
        for start, stop in sorted((p.start, p.stop) for _, p in blocks):
            if start != end:
                return False
            end = stop
        return end == count
    seen = set()
    for _, p in blocks:
        seen.update(_positions(p))
    return len(seen) == count and min(seen, default=0) >= 0 and max(seen, default=-1) < count


def decode_dataframe(node, ctx):
    fields, members = node[_FIELDS], node[_MEMBERS]
    node_id = node.get("id")
    num_rows = fields.get(_NUM_ROWS)
    if type(num_rows) is not int or num_rows < 0:
        raise InvalidArgument(f"DataFrame {node_id} has no valid num_rows")
    columns = _columns_index(fields, node.get("_labels"))
    count = len(columns)
    index = decode_index(members[_INDEX], ctx) if _INDEX in members \
        else pd.RangeIndex(num_rows)
    if len(index) != num_rows:
        raise InvalidArgument(
            f"DataFrame {node_id} has {num_rows} rows but an index of {len(index)}")
    planned, max_position = node.get("_blocks", ((), -1))
    if max_position >= count:
        raise InvalidArgument(
            f"DataFrame {node_id} has member column_{max_position} but {count} columns")
    blocks = _numeric_blocks(planned, num_rows, ctx, node_id)
    stored = _stored_blocks(fields, members, num_rows, count, ctx, node_id)
    blocks += stored
    placed = sum(len(_positions(p)) for _, p in blocks)
    own = 0  # columns stored one by one, still among the members
    if placed < count:
        taken = set()
        for _, placement in blocks:
            taken.update(_positions(placement))
        for i in range(count):
            if i in taken:
                continue
            child = members.get(_column_key(i))
            if child is None:
                raise InvalidArgument(f"DataFrame {node_id} lacks member column_{i}")
            values = decode_column(child, ctx)
            if len(values) != num_rows:
                raise InvalidArgument(
                    f"DataFrame {node_id}: column_{i} has {len(values)} rows, not {num_rows}")
            if isinstance(values, np.ndarray):  # object blocks are 2-d
                values = values.reshape(1, num_rows)
            blocks.append((values, slice(i, i + 1)))
            own += 1
    if len(members) > own + len(stored) + (_INDEX in members):
        # More members than were read: a column_<i> of a column that is in
        # a block too is a second placement (other members are ignored).
        for _, placement in stored:
            for p in _positions(placement):
                if _column_key(p) in members:
                    raise InvalidArgument(
                        f"DataFrame {node_id}: column {p} is in a block and member "
                        f"column_{p} too")
    if not _places_each_once(blocks, count):
        raise InvalidArgument(
            f"DataFrame {node_id}: its blocks and columns do not place each of its "
            f"{count} columns exactly once")
    return _frame_from_blocks(blocks, columns, index)


def decode_series(node, ctx):
    fields, members = node[_FIELDS], node[_MEMBERS]
    values = decode_column(members["values"], ctx)
    index = decode_index(members[_INDEX], ctx)
    return pd.Series(values, index=index, name=fields.get("name"), copy=False)


_codec.ENCODERS.update({pd.DataFrame: encode_dataframe, pd.Series: encode_series})
_codec.DECODERS.update({
    DATAFRAME: decode_dataframe,
    SERIES: decode_series,
    RANGE_INDEX: decode_index,
    STRINGS: decode_strings_column,
    CATEGORICAL: decode_categorical,
    NULLABLE: decode_nullable,
    SPARSE: decode_sparse,
})
