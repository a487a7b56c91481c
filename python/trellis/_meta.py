"""Metadata trees as Python objects: ObjectMeta (a tree, read-only once the
object exists, fillable before) and Object (a handle on a stored object).

A gotten tree mirrors the JSON form of docs/format.md: ``meta["typename"]``,
``meta["fields"]`` (a dict), ``meta["members"]`` (a dict of ObjectMeta).
Vineyard's flat view works too: ``meta[key]`` is also a field's value or a
member's ObjectMeta, and a new ObjectMeta is filled the Vineyard way::

    meta = trellis.ObjectMeta()
    meta["typename"] = "my::Pair"
    meta["label"] = "left"                  # a field (any JSON value)
    meta.add_member("buffer", blob)        # an ObjectID, Blob, Object or ObjectMeta
    obj = client.create_metadata(meta)     # the stored object's ObjectMeta
"""

import collections.abc
import math

from trellis import _core, _vineyard_keys
from trellis._core import InvalidArgument, ObjectID

# Keys of a tree node (docs/format.md) that ``meta[key]`` reads before a
# field or member of that name.
_NODE_KEYS = ("typename", "id", "nbytes", "fields", "members", "instance_id", "global")


def _member_ref(value):
    """The tree node add_member stores for `value`: a reference {"id": N} to
    an existing object, or the tree of a new ObjectMeta."""
    if isinstance(value, ObjectMeta):
        return value._tree if value._tree.get("id") is None else {"id": value._tree["id"]}
    if isinstance(value, Object):
        return {"id": int(value.id)}
    if isinstance(value, (ObjectID, _core.Blob, _core.BlobWriter)):
        return {"id": int(value if isinstance(value, ObjectID) else value.id)}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"id": int(ObjectID(value))}
    raise InvalidArgument(f"a member is an ObjectID, Blob, BlobWriter, Object or ObjectMeta, "
                          f"got {type(value).__name__}")


def _field_value(key, value):
    """`value` as a field stores it (JSON: tuples become lists); raises
    InvalidArgument naming `key` for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 64):
            raise InvalidArgument(f"field {key!r}: {value} does not fit 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"field {key!r}: {value} is not a finite number")
        return value
    if isinstance(value, (list, tuple)):
        return [_field_value(key, v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise InvalidArgument(f"field {key!r}: dict keys must be str")
        return {k: _field_value(key, v) for k, v in value.items()}
    raise InvalidArgument(f"field {key!r}: a {type(value).__name__} is not a JSON value "
                          "(str, int, float, bool, None, list, dict)")


class ObjectMeta(collections.abc.Mapping):
    """The metadata tree of an object.

    Built by ``get_meta`` and friends it is read-only, and keeps its blobs
    readable while it lives (``meta.blob()`` views a blob node's bytes).
    ``ObjectMeta()`` is a new, empty tree to fill (``meta[key] = value``,
    ``add_member``, ``set_global``) and pass to ``Client.create_metadata``.
    """

    def __init__(self, tree=None, ctx=None, *, global_=False, instance=None, **ignored):
        self._ctx = ctx
        self._instance = instance  # the instance of the client that got it
        self._nbytes = None  # nbytes a builder set on a new tree
        if tree is None:
            tree = {"fields": {}}
        self._tree = tree
        if global_:
            self.set_global()
        # Keyword arguments are ignored, as Vineyard's are (its builders
        # pass their **kwargs to ObjectMeta()).

    # -- reading ---------------------------------------------------------
    def __getitem__(self, key):
        tree = self._tree
        if key == "members":
            return self.members
        if key in _NODE_KEYS and key in tree:
            return tree[key]
        fields = tree.get("fields", {})
        if key in fields:
            return fields[key]
        if key in tree.get("members", {}):
            return self.member(key)
        try:
            return _vineyard_keys.field(tree, key)
        except KeyError:
            pass
        return self.member(key)  # Vineyard's member names (index_, ...) or KeyError

    def __iter__(self):
        return iter(self._tree)

    def __len__(self):
        return len(self._tree)

    def __contains__(self, key):
        try:
            self[key]
        except KeyError:
            return False
        return True

    @property
    def meta(self):
        """Itself (as Vineyard's): code written for an Object's ``meta``
        takes an ObjectMeta too."""
        return self

    @property
    def typename(self):
        return self._tree.get("typename")

    @typename.setter
    def typename(self, value):
        self["typename"] = value

    @property
    def id(self):
        """The object's ObjectID (InvalidArgument before it is created)."""
        if self._tree.get("id") is None:
            raise InvalidArgument("this ObjectMeta is not stored yet; it has no id")
        return ObjectID(self._tree["id"])

    @property
    def nbytes(self):
        """The bytes of the object's blobs (the daemon counts them); on a new
        tree, what the builder set."""
        if "nbytes" in self._tree:
            return self._tree["nbytes"]
        return self._nbytes or 0

    @nbytes.setter
    def nbytes(self, value):
        self._require_new("nbytes")
        if not isinstance(value, int) or value < 0:
            raise InvalidArgument(f"nbytes must be an int >= 0, got {value!r}")
        self._nbytes = value

    @property
    def signature(self):
        """Vineyard's signature names an object across copies; trellis keeps
        one id per object, so it is the id's value."""
        return int(self.id)

    @property
    def fields(self):
        return self._tree.get("fields", {})

    @property
    def instance_id(self):
        """The daemon that serves this object (for a chunk of a global
        object: the member that holds it); None before it is created."""
        return self._tree.get("instance_id")

    @property
    def is_global(self):
        """True for a global object (docs/format.md, "Global objects")."""
        return bool(self._tree.get("global", False))

    isglobal = is_global

    @property
    def islocal(self):
        """True if the object's bytes are in this client's daemon: it is not
        global and that daemon made it (or it is not stored yet)."""
        if self.is_global:
            return False
        made_by = self._tree.get("instance_id")
        return made_by is None or self._instance is None or made_by == self._instance

    @property
    def memory_usage(self):
        """Bytes of the distinct blobs under this node."""
        seen, stack = {}, [self._tree]
        while stack:
            node = stack.pop()
            if node.get("typename") == "trellis::Blob" and "id" in node:
                seen[node["id"]] = node.get("nbytes", 0)
            stack.extend(node.get("members", {}).values())
        return sum(seen.values())

    @property
    def members(self):
        return {name: self._child(node) for name, node in self._tree.get("members", {}).items()}

    def member(self, name):
        """The ObjectMeta of member `name`; ObjectNotFound if there is none."""
        try:
            return self._child(self._tree["members"][name])
        except KeyError:
            pass
        try:
            return self._child(_vineyard_keys.member(self._tree, name))
        except KeyError:
            raise _core.ObjectNotFound(
                f"{self.typename} {self._tree.get('id')} has no member {name!r}") from None

    def get_member(self, name):
        """Member `name` as an Object handle (Vineyard's get_member)."""
        return Object(self.member(name))

    def _child(self, node):
        return ObjectMeta(node, self._ctx, instance=self._instance)

    def blob(self):
        """A read-only Blob of this blob node's bytes."""
        if self._ctx is None:
            raise InvalidArgument("this tree was not gotten with get_meta; no bytes are mapped")
        return self._ctx.blob(self._tree)

    def to_dict(self):
        """The tree as plain nested dicts (ids as ints)."""
        return self._tree

    # -- filling a new tree ------------------------------------------------
    def _require_new(self, what):
        if self._tree.get("id") is not None:
            raise InvalidArgument(f"cannot set {what}: object {ObjectID(self._tree['id'])} "
                                  "is stored and immutable")

    def __setitem__(self, key, value):
        """On a new tree: ``typename``, ``nbytes``, a member (an ObjectID,
        Blob, Object or ObjectMeta value) or a field (any JSON value)."""
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"a key is a non-empty str, got {key!r}")
        self._require_new(repr(key))
        if key == "typename":
            if not isinstance(value, str) or not value:
                raise InvalidArgument(f"typename must be a non-empty str, got {value!r}")
            self._tree["typename"] = value
        elif key == "nbytes":
            self.nbytes = value
        elif key in ("id", "instance_id", "fields", "members", "global"):
            raise InvalidArgument(f"{key!r} is set by the daemon or by a method, not by key")
        elif isinstance(value, (ObjectMeta, Object, ObjectID, _core.Blob, _core.BlobWriter)):
            self.add_member(key, value)
        else:
            self._tree.setdefault("fields", {})[key] = _field_value(key, value)

    def add_member(self, name, member):
        """Makes `member` (an existing object by ObjectID, Blob, BlobWriter
        or Object, or a new ObjectMeta) member `name` of this new tree."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"a member name is a non-empty str, got {name!r}")
        self._require_new(f"member {name!r}")
        self._tree.setdefault("members", {})[name] = _member_ref(member)

    def set_global(self, global_=True):
        """Marks a new tree as a global object: its members are objects
        persisted anywhere in the cluster (docs/format.md)."""
        self._require_new("global")
        if global_:
            self._tree["global"] = True
        else:
            self._tree.pop("global", None)

    def __repr__(self):
        ident = self._tree.get("id")
        ident = str(ObjectID(ident)) if isinstance(ident, int) else "new"
        return (f"ObjectMeta({self.typename} {ident}, fields={self.fields!r}, "
                f"members={sorted(self._tree.get('members', {}))})")


class Object:
    """A handle on a stored object (``Client.get_object``): its id, type,
    size and metadata, without decoding its value."""

    def __init__(self, meta, client=None):
        self._meta = meta
        self._client = client

    @property
    def meta(self):
        return self._meta

    @property
    def id(self):
        return self._meta.id

    @property
    def signature(self):
        return self._meta.signature

    @property
    def typename(self):
        return self._meta.typename

    @property
    def nbytes(self):
        return self._meta.nbytes

    @property
    def isglobal(self):
        return self._meta.is_global

    @property
    def islocal(self):
        return self._meta.islocal

    @property
    def ispersist(self):
        """True if the object is persisted (published to the cluster's
        metadata store); asks the daemon. A global object always is."""
        if self._meta.is_global:
            return True
        if self._client is None:
            raise InvalidArgument("this Object has no client to ask")
        return self._client._is_persisted(self.id, self.typename)

    def member(self, name):
        """Member `name` as an Object."""
        return Object(self._meta.member(name), self._client)

    def __eq__(self, other):
        return isinstance(other, Object) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"Object <{self.id}: {self.typename}>"
