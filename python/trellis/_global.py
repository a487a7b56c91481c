"""Global objects: one object made of objects (chunks) that live on several
members of a cluster (docs/format.md, "Global objects").

    ids = [client_a.put(part, persist=True) for part in parts_on_a] + [...]
    g = client.put_global(ids, name="sales")      # on any member
    g = trellis.get(name="sales")                  # a GlobalObject, anywhere
    [(c.id, c.instance_id) for c in g]             # the chunks and where
    df = g.gather()                                # one local DataFrame

A global object holds no bytes: ``get`` returns its chunk list at once;
``gather`` fetches the chunks that are elsewhere (``get(id, fetch=True)``,
one transfer per chunk, kept here) and joins them.
"""

import collections.abc
import re
import sys

from trellis._core import InvalidArgument, ObjectID

# Member keys a Python put_global writes, in order: chunk_0 ... chunk_<n-1>.
CHUNK_PREFIX = "chunk_"
_CHUNK_KEY = re.compile(r"chunk_(\d+)\Z")


def chunk_tree(chunk_ids, typename=None, fields=None):
    """The tree CreateObject takes for a global object of `chunk_ids`
    (ObjectIDs or anything ObjectID() accepts), in order."""
    if isinstance(chunk_ids, (str, bytes)) or not isinstance(chunk_ids, collections.abc.Iterable):
        raise InvalidArgument(f"put_global takes a list of object ids, got {chunk_ids!r}")
    members = {f"{CHUNK_PREFIX}{i}": {"id": int(_as_id(c))}
               for i, c in enumerate(chunk_ids)}
    if not members:
        raise InvalidArgument("a global object needs at least one chunk")
    tree = {"global": True, "members": members,
            "fields": {"partitions": len(members), **(fields or {})}}
    if typename is not None:
        if not isinstance(typename, str) or not typename:
            raise InvalidArgument(f"typename must be a non-empty str, got {typename!r}")
        tree["typename"] = typename
    return tree


def _as_id(value):
    from trellis.client import as_id
    return as_id(value)


def _member_order(name):
    """Chunks in their numeric order (the daemon returns members sorted by
    key, so chunk_10 would come before chunk_2), other members after."""
    m = _CHUNK_KEY.match(name)
    return (0, int(m.group(1)), "") if m else (1, 0, name)


class GlobalObject(collections.abc.Sequence):
    """What ``get`` returns for a global object: a read-only sequence of
    its chunks, each an ObjectMeta with ``id``, ``typename``, ``nbytes``,
    ``fields`` and ``instance_id`` (the member of the cluster that holds
    it). ``gather()`` joins them into one local value."""

    def __init__(self, tree, client):
        from trellis.client import ObjectMeta
        self.meta = ObjectMeta(tree)  # the root, with its chunk stubs
        self._client = client
        members = tree.get("members", {})
        self._chunks = [ObjectMeta(members[k]) for k in sorted(members, key=_member_order)]

    # The root's description, as for any object (ObjectMeta's properties).
    id = property(lambda self: self.meta.id)
    typename = property(lambda self: self.meta.typename)
    nbytes = property(lambda self: self.meta.nbytes)
    fields = property(lambda self: self.meta.fields)
    instance_id = property(
        lambda self: self.meta.instance_id,
        doc="The member that made the global object (its chunks may be anywhere).")

    def __getitem__(self, i):
        return self._chunks[i]

    def __len__(self):
        return len(self._chunks)

    def locations(self):
        """{instance_id: [chunk ids]} in chunk order."""
        out = {}
        for c in self._chunks:
            out.setdefault(c["instance_id"], []).append(c.id)
        return out

    def gather(self, client=None):
        """The chunks' values joined into one local value: DataFrames and
        Series by ``pandas.concat`` (indexes kept), arrays by
        ``numpy.concatenate`` along the first axis, anything else as a list.
        Chunks on other members are fetched here first (and kept). Raises
        ObjectNotFound naming a chunk whose member is gone."""
        client = client or self._client
        values = [client.get(c.id, fetch=True) for c in self._chunks]
        return join(values)

    def __repr__(self):
        where = {k: len(v) for k, v in self.locations().items()}
        return (f"<GlobalObject {self.typename} {self.id}: {len(self)} chunks, "
                f"{self.nbytes} bytes, chunks per instance {where}>")


def join(values):
    """Joins chunk values as GlobalObject.gather does."""
    pd = sys.modules.get("pandas")  # a decoded frame means pandas is loaded
    if values and pd is not None and all(isinstance(v, (pd.DataFrame, pd.Series))
                                         for v in values):
        return pd.concat(values)
    np = sys.modules.get("numpy")
    if values and np is not None and all(isinstance(v, np.ndarray) for v in values):
        return np.concatenate(values)
    return list(values)
