"""The converter framework: Python values <-> metadata trees + one blob.

A put turns a value into a tree (docs/format.md) with ``encode``. Every
buffer the tree needs is planned by a ``Packer`` as a 64-byte-aligned region
of a single blob, so putting any value costs one CreateBlobs and one
CreateObject round trip, however many columns or members it has. Tree nodes
refer to that blob through the placeholder ``BLOB``, which the extension
replaces by the blob's id when it sends the tree.

A get turns a tree back with ``decode``; a ``DecodeContext`` hands out the
blobs of the tree as read-only ``trellis.Blob`` views of shared memory, each
keeping its object held (and its bytes valid) while anything made from it
lives.

Converters register per exact Python type (``ENCODERS``; subclasses are
pickled so they come back as themselves) and per type name (``DECODERS``).
pandas converters load lazily: a pandas value cannot exist unless pandas was
imported, and decoding a pandas type name imports it.
"""

import sys

import numpy as np

from trellis._core import InvalidArgument, UnsupportedType, decode_tree
from trellis._core import format as fmt

# The rules of the format (node keys, type names, dtype table) come from
# trellis._core.format, i.e. src/common/tree_format.h, as for C++.
ALIGN = fmt.ALIGN
TYPENAME, FIELDS, MEMBERS = fmt.TYPENAME, fmt.FIELDS, fmt.MEMBERS

# Containers (lists, dicts, ...) nested deeper than this are pickled whole:
# each nested container is a tree level, which takes two of the protocol's
# 64 MessagePack levels, and a DataFrame or array at the bottom adds three.
MAX_NESTING = 24

# Stands for the put's blob in a tree being built (compared by identity).
BLOB = object()

# type -> fn(value, packer) -> node, or None to fall back to pickle.
ENCODERS = {}
# typename -> fn(node, ctx) -> value.
DECODERS = {}


def node(typename, fields=None, members=None):
    """A new tree node (docs/format.md, "Building a tree")."""
    out = {TYPENAME: typename}
    if fields is not None:
        out[FIELDS] = fields
    if members is not None:
        out[MEMBERS] = members
    return out


class Packer:
    """Plans the regions of one put's blob, then fills them.

    Not thread-safe; one per put. Converters call ``add_array``/``add_bytes``
    (or ``region`` + ``on_write``) while encoding; ``write`` runs once the
    blob exists.
    """

    def __init__(self, client=None, builders=None, builder_kwargs=None):
        self.size = 0
        self.referenced = False  # some node refers to BLOB
        # User builders (trellis.core.builder) to consult for every value,
        # with the client they put with; None: trellis's converters only.
        self.client, self.builders = client, builders
        self.builder_kwargs = builder_kwargs or {}
        self._jobs = []  # fn(writer) run by write()
        self._arrays = {}  # id(array) -> (array, offset, c_order): dedupe
        self._path = []  # containers being encoded, to detect cycles

    def blob(self):
        """The placeholder for this put's blob, to put in a node's members."""
        self.referenced = True
        return BLOB

    def region(self, nbytes):
        """Reserves `nbytes` at a 64-byte-aligned offset and returns it."""
        offset = (self.size + ALIGN - 1) // ALIGN * ALIGN
        self.size = offset + int(nbytes)
        return offset

    def on_write(self, job):
        """Runs `job(writer)` when the blob is written."""
        self._jobs.append(job)

    def add_array(self, array, c_order):
        """Plans a copy of `array`'s elements; returns their offset.

        The copy is C order if `c_order` or the array is not F-contiguous,
        else F order (kept as it is). The same array object added twice is
        stored once."""
        keep_f = not c_order and array.flags.f_contiguous and not array.flags.c_contiguous
        key = id(array)
        seen = self._arrays.get(key)
        if seen is not None and seen[0] is array and seen[2] == keep_f:
            return seen[1]
        offset = self.region(array.nbytes)
        self._arrays[key] = (array, offset, keep_f)
        if array.nbytes == 0:
            return offset
        if array.flags.c_contiguous or keep_f:
            self.on_write(lambda w: w.write(offset, array))
        else:
            def copy(w):
                dest = np.ndarray(array.shape, array.dtype, buffer=w, offset=offset)
                np.copyto(dest, array, casting="no")
            self.on_write(copy)
        return offset

    def add_bytes(self, data):
        """Plans a copy of a bytes-like object; returns its offset."""
        view = np.frombuffer(data, dtype=np.uint8)
        offset = self.region(view.nbytes)
        if view.nbytes:
            self.on_write(lambda w: w.write(offset, view))
        return offset

    def write(self, writer):
        for job in self._jobs:
            job(writer)

    def enter(self, container):
        """Marks `container` as being encoded; raises PickleWhole if it
        already is (a self-referencing value) or if containers nest deeper
        than MAX_NESTING (the tree would exceed the wire's nesting limit):
        only pickle can store those."""
        if len(self._path) >= MAX_NESTING or any(c is container for c in self._path):
            raise PickleWhole()
        self._path.append(container)

    def leave(self):
        self._path.pop()


class PickleWhole(Exception):
    """The value cannot be a tree; the whole value is pickled instead."""


class DecodeContext:
    """Blob views of one gotten tree, one per blob id."""

    def __init__(self, lease, resolvers=None, resolver_kwargs=None):
        self._lease = lease
        self._blobs = {}
        # User resolvers (trellis.core.resolver) to consult for every node;
        # None: trellis's converters only.
        self.resolvers = resolvers
        self.resolver_kwargs = resolver_kwargs or {}

    def with_resolvers(self, resolvers, resolver_kwargs=None):
        """A context over the same blobs that decodes with `resolvers`."""
        other = DecodeContext(self._lease, resolvers, resolver_kwargs)
        other._blobs = self._blobs
        return other

    def blob(self, node):
        """The read-only Blob of a blob node of the tree."""
        blob_id = node[fmt.ID]
        blob = self._blobs.get(blob_id)
        if blob is None:
            if node.get(TYPENAME) != fmt.BLOB or fmt.OFFSET not in node:
                raise InvalidArgument(
                    f"member {node.get(fmt.ID)} of type {node.get(TYPENAME)!r} is not a blob")
            blob = self._lease.blob(blob_id, node[fmt.OFFSET], node[fmt.NBYTES])
            self._blobs[blob_id] = blob
        return blob


def _load_pandas_codec():
    from trellis import _pandas  # noqa: F401  registers its converters


def encode(value, packer):
    """The tree node of `value`; its buffers are planned in `packer`."""
    if packer.builders is not None:
        node = _build_with_user_builder(value, packer)
        if node is not None:
            return node
    encoder = ENCODERS.get(type(value))
    if encoder is None and "pandas" in sys.modules:
        _load_pandas_codec()
        encoder = ENCODERS.get(type(value))
    node = encoder(value, packer) if encoder is not None else None
    if node is None:
        from trellis._pickle import encode_pickle

        node = encode_pickle(value, packer)
    return node


def _build_with_user_builder(value, packer):
    """A reference to the object a user builder made of `value`, or None
    when trellis's converters take it; UnsupportedType if no builder does."""
    from trellis.core.builder import BUILTIN, call_builder

    builder = packer.builders.lookup(type(value))
    if builder is BUILTIN:
        return None
    if builder is None:
        raise UnsupportedType(f"no builder for a {type(value).__module__}."
                              f"{type(value).__qualname__} in {packer.builders!r}")
    oid = call_builder(builder, packer.client, value, packer.builders, packer.builder_kwargs)
    return {fmt.ID: int(oid)}


def encode_root(value, client=None, builders=None, builder_kwargs=None):
    """(tree, packer) for a put of `value`; `builders` as for Packer."""
    packer = Packer(client, builders, builder_kwargs)
    try:
        return encode(value, packer), packer
    except PickleWhole:
        from trellis._pickle import encode_pickle

        packer = Packer(client, builders, builder_kwargs)
        return encode_pickle(value, packer), packer


# Type names whose decoder lives in trellis._pandas.
PANDAS_TYPENAMES = (
    fmt.DATAFRAME, fmt.SERIES, fmt.RANGE_INDEX,
    fmt.STRING_COLUMN, fmt.CATEGORICAL, fmt.NULLABLE_COLUMN, "trellis::SparseColumn",
)


def decode(node, ctx):
    """The Python value of a tree node. Types without a Python converter
    come back as their ObjectMeta."""
    typename = node.get(TYPENAME)
    if ctx.resolvers is not None:
        return _resolve_with_user_resolvers(node, ctx)
    decoder = DECODERS.get(typename)
    if decoder is None and typename in PANDAS_TYPENAMES:
        _load_pandas_codec()
        decoder = DECODERS.get(typename)
    if decoder is None:
        from trellis.client import ObjectMeta

        return ObjectMeta(full_tree(node), ctx)
    return decoder(node, ctx)


def _resolve_with_user_resolvers(node, ctx):
    """`node` decoded by the resolver its context registers for its type
    name: a user resolver, trellis's converter (BUILTIN), or, for none,
    its ObjectMeta."""
    from trellis.core.builder import BUILTIN
    from trellis.core.resolver import call_resolver
    from trellis._meta import Object, ObjectMeta

    typename = node.get(TYPENAME)
    resolver = ctx.resolvers.lookup(typename)
    if resolver is BUILTIN:
        decoder = DECODERS.get(typename)
        if decoder is None and typename in PANDAS_TYPENAMES:
            _load_pandas_codec()
            decoder = DECODERS.get(typename)
        if decoder is not None:
            return decoder(node, ctx)
    meta = ObjectMeta(full_tree(node), ctx)
    if resolver is None or resolver is BUILTIN:
        return meta
    return call_resolver(resolver, Object(meta), ctx.resolvers, ctx.resolver_kwargs)


def full_tree(node):
    """`node` with every DataFrame node that was read with frame blocks
    (trellis._core.get_tree) back in its full form, for metadata views."""
    if "_raw" in node:
        return decode_tree(node["_raw"])
    members = node.get(MEMBERS)
    if not members:
        return node
    full = {name: full_tree(child) for name, child in members.items()}
    if all(full[name] is child for name, child in members.items()):
        return node
    return {**node, MEMBERS: full}


def decode_root(tree, lease):
    return decode(tree, DecodeContext(lease))
