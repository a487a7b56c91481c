"""numpy.ndarray <-> trellis::Tensor (docs/format.md).

Stored as they are: every bool, integer, float and complex dtype, datetime64
and timedelta64 of any unit, and fixed-width bytes (S) and unicode (U), in
either byte order. C-contiguous arrays keep C strides, F-contiguous ones F
strides, anything else is made C-contiguous while copying. Object and
structured dtypes, and ndarray subclasses, go to the pickle fallback.

A gotten tensor is a read-only ndarray whose buffer is the shared memory.
"""

import numpy as np

from trellis import _codec
from trellis._core import InvalidArgument
from trellis._core import format as fmt

TENSOR = fmt.TENSOR

# dtype kinds a put stores as a Tensor.
TENSOR_KINDS = frozenset(fmt.TENSOR_WRITE_KINDS)
_DTYPE, _SHAPE, _STRIDES, _OFFSET, _BUFFER = (
    fmt.TENSOR_DTYPE, fmt.TENSOR_SHAPE, fmt.TENSOR_STRIDES, fmt.TENSOR_OFFSET,
    fmt.TENSOR_BUFFER)


def storable(dtype):
    return dtype.kind in TENSOR_KINDS and dtype.fields is None and dtype.itemsize > 0


def _c_strides(shape, item):
    strides, step = [], item
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return strides[::-1]


def tensor_at(dtype_str, shape, strides, offset, packer, extra_fields=None):
    """A Tensor node over bytes already planned at `offset` of the blob."""
    fields = {_DTYPE: dtype_str, _SHAPE: list(shape), _STRIDES: list(strides),
              _OFFSET: offset}
    if extra_fields:
        fields.update(extra_fields)
    return _codec.node(TENSOR, fields, {_BUFFER: packer.blob()})


def tensor_node(array, packer, extra_fields=None):
    """A Tensor node holding a copy of `array` (whose dtype is storable)."""
    item = array.dtype.itemsize
    shape = list(array.shape)
    f_order = array.flags.f_contiguous and not array.flags.c_contiguous
    strides = _c_strides(shape[::-1], item)[::-1] if f_order else _c_strides(shape, item)
    offset = packer.add_array(array, c_order=False)
    return tensor_at(array.dtype.str, shape, strides, offset, packer, extra_fields)


def encode_ndarray(array, packer):
    if not storable(array.dtype):
        return None  # pickle
    return tensor_node(array, packer)


def decode_tensor(node, ctx):
    fields = node[fmt.FIELDS]
    try:
        dtype = np.dtype(fields[_DTYPE])
        shape = tuple(fields[_SHAPE])
        strides = tuple(fields[_STRIDES])
        offset = fields.get(_OFFSET, 0)
    except (KeyError, TypeError) as e:
        raise InvalidArgument(f"malformed trellis::Tensor {node.get('id')}: {e}") from None
    buffer = ctx.blob(node[fmt.MEMBERS][_BUFFER])
    if 0 in shape:
        # Nothing to share (and numpy rejects offsets at a buffer's end).
        return _readonly(np.empty(shape, dtype))
    try:
        return np.ndarray(shape, dtype, buffer=buffer, offset=offset, strides=strides)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(
            f"trellis::Tensor {node.get('id')} does not fit its buffer: {e}") from None


def _readonly(array):
    array.flags.writeable = False
    return array


_codec.ENCODERS[np.ndarray] = encode_ndarray
_codec.DECODERS[TENSOR] = decode_tensor
