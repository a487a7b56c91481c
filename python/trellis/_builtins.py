"""Python builtins <-> py::* trees (docs/format.md, "Python types").

None, bool, int, float, str and bytes are leaves; tuple, list and dict keep
their members as objects, so a dict of arrays keeps its arrays zero-copy.
Short str/bytes live in the tree, longer ones in the blob. Containers of
more than MAX_ITEMS entries are pickled instead (a tree node per entry would
cost more than it gives; pickle still keeps large buffers out of band).
"""

from trellis import _codec
from trellis._core import InvalidArgument

INLINE_LIMIT = 4096  # bytes of str/bytes kept in the tree
MAX_ITEMS = 10000

_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1


def _leaf(typename, **fields):
    return {"typename": typename, "fields": fields}


def encode_int(value, packer):
    if _INT64_MIN <= value <= _UINT64_MAX:
        return _leaf("py::Int", value=value)
    return _leaf("py::Int", hex=hex(value))  # hex: no digit limit, exact


def _encode_text(typename, raw, packer):
    if len(raw) <= INLINE_LIMIT:
        return {"typename": typename, "fields": {"value": raw}}
    offset = packer.add_bytes(raw)
    return {"typename": typename, "fields": {"offset": offset, "size": len(raw)},
            "members": {"buffer": packer.blob()}}


def encode_str(value, packer):
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        return None  # lone surrogates: pickle
    if len(raw) <= INLINE_LIMIT:
        return _leaf("py::Str", value=value)
    return _encode_text("py::Str", raw, packer)


def encode_bytes(value, packer):
    return _encode_text("py::Bytes", value, packer)


def encode_memoryview(value, packer):
    """Its bytes in the blob (C order), with its format and shape: a get
    returns a read-only memoryview of them in shared memory."""
    raw = value if value.c_contiguous else memoryview(value.tobytes())
    offset = packer.add_bytes(raw.cast("B") if raw.ndim else raw.tobytes())
    return {"typename": "py::MemoryView",
            "fields": {"offset": offset, "size": value.nbytes, "format": value.format,
                       "itemsize": value.itemsize, "shape": list(value.shape)},
            "members": {"buffer": packer.blob()}}


def decode_memoryview(node, ctx):
    fields = node["fields"]
    view = memoryview(ctx.blob(node["members"]["buffer"]))
    start, size = fields["offset"], fields["size"]
    view = view[start:start + size]
    shape = fields["shape"]
    try:
        return view.cast(fields["format"], shape)
    except (TypeError, ValueError):  # a format memoryview.cast does not take
        return view


def _encode_sequence(typename):
    def encode_sequence(value, packer):
        if len(value) > MAX_ITEMS:
            return None
        packer.enter(value)
        members = {str(i): _codec.encode(item, packer) for i, item in enumerate(value)}
        packer.leave()
        return {"typename": typename, "fields": {"length": len(value)}, "members": members}
    return encode_sequence


def encode_dict(value, packer):
    if len(value) > MAX_ITEMS:
        return None
    packer.enter(value)
    members = {}
    fields = {"length": len(value)}
    if all(type(k) is str for k in value):
        fields["keys"] = list(value)
    else:
        for i, key in enumerate(value):
            members[f"key_{i}"] = _codec.encode(key, packer)
    for i, item in enumerate(value.values()):
        members[f"value_{i}"] = _codec.encode(item, packer)
    packer.leave()
    return {"typename": "py::Dict", "fields": fields, "members": members}


def _text(node, ctx):
    fields = node["fields"]
    if "value" in fields:
        return fields["value"]
    blob = ctx.blob(node["members"]["buffer"])
    start = fields["offset"]
    return memoryview(blob)[start:start + fields["size"]]


def decode_str(node, ctx):
    text = _text(node, ctx)
    return text if isinstance(text, str) else str(text, "utf-8")


def decode_bytes(node, ctx):
    return bytes(_text(node, ctx))


def decode_int(node, ctx):
    fields = node["fields"]
    return fields["value"] if "value" in fields else int(fields["hex"], 16)


def _decode_items(node, ctx):
    members, n = node.get("members", {}), node["fields"]["length"]
    try:
        return [_codec.decode(members[str(i)], ctx) for i in range(n)]
    except KeyError as e:
        raise InvalidArgument(f"{node['typename']} {node.get('id')} lacks member {e}") from None


def decode_dict(node, ctx):
    fields, members = node["fields"], node.get("members", {})
    n = fields["length"]
    if "keys" in fields:
        keys = fields["keys"]
    else:
        keys = [_codec.decode(members[f"key_{i}"], ctx) for i in range(n)]
    return {k: _codec.decode(members[f"value_{i}"], ctx) for i, k in enumerate(keys)}


_codec.ENCODERS.update({
    type(None): lambda v, p: {"typename": "py::None"},
    bool: lambda v, p: _leaf("py::Bool", value=v),
    int: encode_int,
    float: lambda v, p: _leaf("py::Float", value=v),
    str: encode_str,
    bytes: encode_bytes,
    memoryview: encode_memoryview,
    tuple: _encode_sequence("py::Tuple"),
    list: _encode_sequence("py::List"),
    dict: encode_dict,
})

_codec.DECODERS.update({
    "py::None": lambda n, c: None,
    "py::Bool": lambda n, c: bool(n["fields"]["value"]),
    "py::Int": decode_int,
    "py::Float": lambda n, c: float(n["fields"]["value"]),
    "py::Str": decode_str,
    "py::Bytes": decode_bytes,
    "py::MemoryView": decode_memoryview,
    "py::Tuple": lambda n, c: tuple(_decode_items(n, c)),
    "py::List": _decode_items,
    "py::Dict": decode_dict,
})
