"""trellis.Client: the Python client of a local trellisd.

    with trellis.connect() as client:
        oid = client.put(df, name="x_train", persist=True)
        df = client.get(name="x_train")

Round trips: ``put`` of any value costs one CreateObject with the whole
tree, name and persist flag; when its buffers exceed INLINE_PUT_BYTES
they go first into a blob of their own (one CreateBlobs more), else they
travel with the tree. After two puts in a row of at most SPARE_BLOB_BYTES
of buffers, the daemon hands the client a spare blob with each reply (a
little larger than the last put), and the next put that fits writes its
buffers straight into it: one round trip and no copy through the socket
(docs/protocol.md, "Spare blobs"). A client holds at most one spare; the
daemon frees it when the client disconnects. ``get(oid)`` and
``get(name=...)`` cost one (GetMeta). Every call that waits on the daemon
or copies bytes releases the GIL.

Thread-safety: a Client may be shared by threads; its requests are
serialised on one connection, so a blocking ``get_name(wait=True)`` delays
the other threads (use one client per thread for concurrency). After
``fork`` the child must connect anew (module-level calls do so by
themselves).
"""

import math
import re
import warnings

from trellis import _codec, _core, _daemon, _global
from trellis._core import DaemonNotReachable, InvalidArgument, ObjectExists, ObjectID
from trellis._core import UnsupportedType
from trellis._meta import Object, ObjectMeta
from trellis.core.builder import (BUILTIN, BuilderContext, call_builder, custom_builders,
                                  get_current_builders)
from trellis.core.resolver import (ResolverContext, call_resolver, custom_resolvers,
                                   get_current_resolvers)

# Converters register themselves on import.
from trellis import _builtins, _numpy, _pickle  # noqa: F401,E402

_DEFAULT_LIMIT = 100000

# The largest put whose buffers go inline in its CreateObject request
# (bench/small_frames.py measures both ways).
INLINE_PUT_BYTES = 64 * 1024
# Puts of at most this many bytes of buffers ask for a spare blob for the
# next put once the one before was this small too (see the module's doc).
SPARE_BLOB_BYTES = 1 << 20


def _spare_size(size):
    """Bytes of the spare to ask for after a put of `size` bytes: an
    eighth more, in whole pages, so that the next batch of a stream fits
    though its strings are a little longer (the daemon trims the rest)."""
    return (size + size // 8 + 4095) // 4096 * 4096


def as_id(value):
    """An ObjectID from an ObjectID, its str form or its int value, or the
    id of an Object or stored ObjectMeta (Vineyard's calls take those)."""
    if isinstance(value, ObjectID):
        return value
    if isinstance(value, (Object, ObjectMeta)):
        return value.id
    if isinstance(value, str):
        return ObjectID(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return ObjectID(value)
    raise InvalidArgument(f"expected an ObjectID (or its str), got {type(value).__name__}")


def _ids(oid):
    """One id or a collection of them, as a list of ObjectIDs."""
    if isinstance(oid, (list, tuple, set)):
        return [as_id(o) for o in oid]
    return [as_id(oid)]


def _regex(pattern):
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as e:
        raise InvalidArgument(f"bad regular expression {pattern!r}: {e}") from None


def _timeout_ms(timeout):
    """Milliseconds for the daemon; 0 means no limit (timeout=None)."""
    if timeout is None:
        return 0
    if not isinstance(timeout, (int, float)) or timeout < 0 or math.isnan(timeout):
        raise InvalidArgument(f"timeout must be None or seconds >= 0, got {timeout!r}")
    return max(1, math.ceil(timeout * 1000))


# Said when a name is missing from, or a persisted object is put into, an
# embedded daemon that dies with this process: the usual cause of "my next
# pipeline step cannot find its input".
_PRIVATE_DAEMON_HINT = (
    "(this process started its own embedded trellis daemon, which ends with "
    "it: objects put by other processes went to their own daemons. For a "
    "pipeline of several processes, start one shared daemon first with "
    "trellis.start_daemon(detach=True) or run trellisd.)")
_warned_private_persist = False


def _warn_private_persist():
    global _warned_private_persist
    if not _warned_private_persist:
        _warned_private_persist = True
        warnings.warn("put(persist=True) into an embedded daemon that ends with "
                      "this process " + _PRIVATE_DAEMON_HINT, RuntimeWarning,
                      stacklevel=3)


class Client:
    """A connection to one trellisd. Use ``trellis.connect`` to make one."""

    def __init__(self, core, daemon=None):
        self._core = core
        self.daemon = daemon  # the embedded daemon this connect() started, if any
        self._last_put_small = False  # at most SPARE_BLOB_BYTES of buffers

    # -- context manager / lifetime -------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Closes the connection. Objects already gotten stay readable."""
        self._core.close()

    def __repr__(self):
        return f"<trellis.Client socket={self.socket!r} instance={self.instance_id}>"

    @property
    def socket(self):
        return self._core.socket

    @property
    def instance_id(self):
        return self._core.instance_id

    @property
    def is_remote(self):
        """True for a client of a daemon's RPC server (connect("host:port")):
        values are copied over TCP, nothing is shared memory."""
        return self._core.is_remote

    @property
    def arena(self):
        """The address range of this process's mapping of the shared arena:
        ``address in client.arena`` tells whether bytes are shared memory.
        Empty for a remote client."""
        base = self._core.arena_base
        return range(base, base + self._core.arena_size)

    # -- values ----------------------------------------------------------
    def _private_daemon(self):
        """True if this process started the daemon and it ends with it."""
        return self.daemon is not None and not self.daemon.detached

    def put(self, value, name=None, persist=False, overwrite=True, *, builder=None,
            **kwargs):
        """Stores `value` (see docs/format.md for how each type is laid
        out) and returns its ObjectID. With `name`, binds the name in the
        same request (rebinding it unless overwrite=False); with `persist`,
        publishes the object to the metadata store.

        `builder` (Vineyard's: also accepted as the second positional
        argument) is a builder ``fn(client, value, **kwargs)`` for this
        value or a BuilderContext (trellis.core.builder); by default the
        current context's user builders take their types, here and inside
        lists, dicts and tuples, and `kwargs` go to them.

        A small put without a name or persist (one into the spare blob the
        daemon keeps for this client: docs/protocol.md, "Spare blobs")
        returns without waiting for the daemon's reply; the daemon handles
        it before any later request naming the returned id, from any
        process. Should it fail, the next put raises the error, naming the
        object.

        Raises UnsupportedType (a TypeError) if the value has no converter
        and cannot be pickled, OutOfMemory if the arena cannot hold it."""
        if name is not None and not isinstance(name, str) and callable(name):
            builder, name = name, None  # Vineyard's put(value, builder)
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgument(f"name must be a non-empty str, got {name!r}")
        if persist and self._private_daemon():
            _warn_private_persist()
        builders = builder if isinstance(builder, BuilderContext) else custom_builders()
        if builder is None and builders is None and not kwargs:
            tree, packer = _codec.encode_root(value)  # trellis's converters only
        else:
            root = builder if builder is not None and builders is not builder else (
                builders.lookup(type(value)) if builders is not None else BUILTIN)
            if root is None:
                raise UnsupportedType(f"no builder for a {type(value).__module__}."
                                      f"{type(value).__qualname__} in {builders!r}")
            if root is not BUILTIN:
                oid = call_builder(root, self, value, builders or get_current_builders(),
                                   kwargs)
                if name is not None:
                    self.put_name(oid, name, overwrite)
                if persist:
                    self.persist(oid)
                return oid
            if kwargs and builders is None:
                raise InvalidArgument(f"put got unexpected arguments {sorted(kwargs)} "
                                      "(they are for user builders, and none takes this value)")
            tree, packer = _codec.encode_root(value, self, builders, kwargs)
        writer = None
        size = packer.size
        small = packer.referenced and 0 < size <= SPARE_BLOB_BYTES
        if packer.referenced:
            # Into the spare blob if it is large enough; else small buffers
            # travel with the tree (one round trip, the daemon copies them);
            # beyond INLINE_PUT_BYTES writing straight into the arena is
            # cheaper than pushing the bytes through the socket.
            writer = self._core.take_spare_blob(size) if small else None
            if writer is None:
                inline = size <= INLINE_PUT_BYTES and size <= self._core.max_inline_blob
                writer = (self._core.inline_blob if inline else self._core.create_blob)(size)
        spare = _spare_size(size) if small and self._last_put_small else 0
        self._last_put_small = small
        try:
            if writer is not None:
                packer.write(writer)
            # wait=False: a put into the spare blob does not wait for its
            # reply (the tree is our encoders'; see PyClient::CreateObject).
            return self._core.create_object(tree, _codec.BLOB, writer, name or "",
                                            bool(persist), bool(overwrite),
                                            used=size, spare=spare, wait=False)
        finally:
            if writer is not None and writer.open:
                writer.abort()  # failed before the object took the blob

    def get(self, oid=None, name=None, *, wait=False, timeout=None, fetch=False,
            resolver=None, **kwargs):
        """The value of object `oid`, or of the object bound to `name`.

        With `wait`, blocks until the name is bound (up to `timeout`
        seconds, then Timeout). Arrays, and numeric columns of DataFrames,
        are read-only views of shared memory. An object another member of
        the cluster made is ObjectNotFound saying where it lives, unless
        `fetch=True`: the daemon then copies it here first (one transfer
        however many ask at once) and keeps the copy, so later gets are
        local. Raises ObjectNotFound naming the id or name, or naming the
        member that made it when that member is gone.

        `resolver` (Vineyard's) is a resolver ``fn(obj, **kwargs)`` for
        this object or a ResolverContext (trellis.core.resolver); by
        default the current context's user resolvers take their type
        names, and `kwargs` go to them."""
        if oid is None and "object_id" in kwargs:
            oid = kwargs.pop("object_id")  # Vineyard's keyword
        if (oid is None) == (name is None):
            raise InvalidArgument("get needs either an object id or name=..., not both")
        if name is not None and wait:
            oid = self.get_name(name, wait=True, timeout=timeout)
        if oid is not None:
            tree, lease = self._core.get_tree(as_id(oid), frame_blocks=True,
                                              fetch=bool(fetch))
        else:  # one round trip: the daemon resolves the name
            if not isinstance(name, str):
                raise InvalidArgument(f"name must be a str, got {name!r}")
            try:
                tree, lease = self._core.get_tree_by_name(name, frame_blocks=True,
                                                          fetch=bool(fetch))
            except _core.ObjectNotFound as e:
                if self._private_daemon():
                    raise _core.ObjectNotFound(f"{e} {_PRIVATE_DAEMON_HINT}") from None
                raise
        if tree.get("global"):
            return _global.GlobalObject(tree, self)
        if resolver is None and not kwargs:
            resolvers = custom_resolvers()
            if resolvers is None:  # trellis's converters only
                return _codec.decode_root(tree, lease)
        else:
            resolvers = resolver if isinstance(resolver, ResolverContext) else \
                get_current_resolvers()
        ctx = _codec.DecodeContext(lease, resolvers, kwargs)
        if resolver is not None and resolver is not resolvers:  # one resolver for this object
            meta = ObjectMeta(_codec.full_tree(tree), ctx, instance=self.instance_id)
            return call_resolver(resolver, Object(meta, self), resolvers, kwargs)
        return _codec.decode(tree, ctx)

    def put_global(self, chunks, name=None, typename=None, fields=None):
        """Makes one global object of `chunks`, a list of object ids that
        may live on any members of the cluster, and returns its ObjectID.
        Chunks made by this daemon are persisted with it; the others must
        have been put with persist=True where they were made. `typename`
        defaults to trellis::GlobalDataFrame / GlobalTensor when every
        chunk is a DataFrame / Tensor, else trellis::GlobalObject. ``get``
        of it on any member returns a GlobalObject (its chunks and where
        they live); ``gather`` joins them here. Raises ObjectNotFound
        naming a chunk that is neither here nor persisted elsewhere."""
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgument(f"name must be a non-empty str, got {name!r}")
        tree = _global.chunk_tree(chunks, typename, fields)
        return self._core.create_object(tree, _codec.BLOB, None, name or "", True, True)

    def gather(self, oid=None, *, name=None):
        """The chunks of global object `oid` (or `name`) joined into one
        local value (GlobalObject.gather): DataFrames concatenated, arrays
        along their first axis, else a list. Chunks elsewhere are fetched
        here (and kept)."""
        value = self.get(oid, name=name)
        if not isinstance(value, _global.GlobalObject):
            raise InvalidArgument(f"{oid if oid is not None else name!r} is not a global object")
        return value.gather(self)

    # -- names -----------------------------------------------------------
    def put_name(self, oid, name, overwrite=True):
        self._core.put_name(as_id(oid), name, overwrite)

    def get_name(self, name, wait=False, timeout=None):
        """The ObjectID bound to `name`. With `wait`, blocks until bound
        (timeout in seconds, None for no limit; then Timeout)."""
        try:
            return self._core.get_name(name, bool(wait), _timeout_ms(timeout) if wait else 0)
        except _core.ObjectNotFound as e:
            if self._private_daemon():
                raise _core.ObjectNotFound(f"{e} {_PRIVATE_DAEMON_HINT}") from None
            raise

    def drop_name(self, name):
        self._core.drop_name(name)

    def list_names(self, pattern="*", regex=False, limit=_DEFAULT_LIMIT):
        """{name: ObjectID} of the names matching the glob `pattern` (with
        `regex`, the regular expression), at most `limit`."""
        if regex:
            matcher = _regex(pattern)
            found = [(n, o) for n, o in self._core.list_names("*", _DEFAULT_LIMIT)
                     if matcher.fullmatch(n)]
            return dict(found[:limit])
        return dict(self._core.list_names(pattern, limit))

    # -- objects ---------------------------------------------------------
    def persist(self, oid):
        self._core.persist(as_id(oid))

    def delete(self, oid, deep=True, force=False):
        """Deletes an object (or a list of them); with `deep`, also members
        nothing else uses. Without `force`, deleting a member of another
        object is InvalidArgument. Returns the ids deleted."""
        return self._core.delete(_ids(oid), bool(deep), bool(force))

    # -- memory pressure (a daemon with a spill directory) -----------------
    def pin(self, oid):
        """Keeps an object's (or a list of objects') bytes in memory: they
        are reloaded now if on disk and never spilled until unpinned."""
        self._core.pin(_ids(oid))

    def unpin(self, oid):
        self._core.unpin(_ids(oid))

    def evict(self, oid):
        """Writes an object's (or a list of objects') bytes to the spill
        directory now and frees their memory; a later get reloads them.
        InvalidArgument if one is held by a reader or pinned, or if the
        daemon has no spill directory. Returns the bytes written."""
        return self._core.evict(_ids(oid))

    def memory_trim(self):
        """Returns the arena's free pages to the OS; returns the bytes
        released."""
        return self._core.memory_trim()

    def list_objects(self, pattern="*", regex=False, limit=_DEFAULT_LIMIT):
        """Shallow ObjectMetas (id, typename, nbytes, fields, ...) of the
        objects whose type name matches the glob `pattern` (with `regex`,
        the regular expression), at most `limit`."""
        if regex:
            matcher = _regex(pattern)
            found = [ObjectMeta(tree) for tree in self._core.list_objects("*", _DEFAULT_LIMIT)
                     if matcher.fullmatch(tree.get("typename") or "")]
            return found[:limit]
        return [ObjectMeta(tree) for tree in self._core.list_objects(pattern, limit)]

    def get_meta(self, oid, fetch=False, sync_remote=False):
        """The complete metadata tree of an object (one round trip); with
        `fetch`, as for get. (`sync_remote` is Vineyard's: a daemon's view
        of the cluster's metadata is always current.)"""
        tree, lease = self._core.get_tree(as_id(oid), fetch=bool(fetch))
        return ObjectMeta(tree, _codec.DecodeContext(lease))

    # -- blobs -----------------------------------------------------------
    def create_blob(self, size):
        """A writer for a new blob of `size` bytes: ``memoryview(w)`` writes
        in place, ``w.seal()`` makes it immutable and returns a read-only
        Blob, ``w.abort()`` (or dropping an unsealed writer) frees it."""
        if not isinstance(size, int) or size < 0:
            raise InvalidArgument(f"blob size must be an int >= 0, got {size!r}")
        return self._core.create_blob(size)

    def get_blob(self, blob_id):
        """A read-only, zero-copy Blob of a sealed blob."""
        return self._core.get_blob(as_id(blob_id))

    def create_empty_blob(self):
        """A sealed blob of 0 bytes (Vineyard's)."""
        return self._core.create_blob(0).seal()

    def get_blobs(self, blob_ids):
        """``get_blob`` of each id, in order."""
        return [self.get_blob(b) for b in blob_ids]

    def create_remote_blob(self, builder):
        """Stores the bytes of a RemoteBlobBuilder (filled in this process,
        e.g. for a client of a daemon elsewhere) as a sealed blob; returns
        its ObjectMeta."""
        from trellis._remote_blob import RemoteBlobBuilder

        if not isinstance(builder, RemoteBlobBuilder):
            raise InvalidArgument(f"create_remote_blob takes a RemoteBlobBuilder, "
                                  f"got {type(builder).__name__}")
        writer = self._core.create_blob(builder.size)
        try:
            if builder.size:
                writer.copy(0, builder)
            blob = writer.seal()
        finally:
            if writer.open:
                writer.abort()
        return self.get_meta(blob.id)

    # -- Vineyard's object and metadata calls ------------------------------
    def get_object(self, object_id, fetch=False):
        """An Object handle (id, typename, nbytes, meta, member(name)) of a
        stored object, without decoding its value."""
        return Object(self.get_meta(object_id, fetch=fetch), self)

    def get_objects(self, object_ids, fetch=False):
        return [self.get_object(o, fetch=fetch) for o in object_ids]

    def get_metas(self, object_ids, fetch=False, sync_remote=False):
        return [self.get_meta(o, fetch=fetch) for o in object_ids]

    def list_metadatas(self, pattern="*", regex=False, limit=_DEFAULT_LIMIT, nobuffer=False):
        """Complete ObjectMetas of the objects whose type name matches
        `pattern` (a glob, or with `regex` a regular expression), at most
        `limit`. `nobuffer` is accepted for Vineyard's sake: trellis never
        copies blob bytes into metadata."""
        return [self.get_meta(m.id) for m in self.list_objects(pattern, regex, limit)]

    def create_metadata(self, meta):
        """Stores a new ObjectMeta filled by the caller (``meta[key] =``,
        ``add_member``, ``set_global``) as an object and returns its
        ObjectMeta as stored (id, nbytes and instance_id filled in)."""
        if not isinstance(meta, ObjectMeta):
            raise InvalidArgument(f"create_metadata takes an ObjectMeta, got {type(meta).__name__}")
        tree = meta.to_dict()
        if tree.get("id") is not None:
            raise ObjectExists(f"{meta.id} is stored already; create_metadata takes a new "
                               "ObjectMeta")
        if not meta.is_global and not tree.get("typename"):
            raise InvalidArgument("the ObjectMeta has no typename (meta['typename'] = ...)")
        oid = self._core.create_object(tree, _codec.BLOB, None, "", meta.is_global, True)
        return self.get_meta(oid)

    def exists(self, object_id):
        """True if the object (or blob) is on this daemon or published by a
        member of its cluster."""
        try:
            entry = self._core.locate([as_id(object_id)], [])[0]
        except _core.ObjectNotFound:
            return False
        # An id of another member it did not publish says only where it
        # would live, not that it does.
        return bool(entry.get("here")) or "typename" in entry

    has_object = exists

    @property
    def is_ipc(self):
        return not self.is_remote

    @property
    def is_rpc(self):
        return self.is_remote

    def fork(self):
        """A new connection to the same daemon (Vineyard's; e.g. for a
        thread of its own)."""
        return connect(self.socket, start=False)

    def clear(self):
        """Deletes every object on this daemon (and the names bound to
        them); returns how many were deleted."""
        ids = [m.id for m in self.list_objects("*", limit=_DEFAULT_LIMIT)]
        if not ids:
            return 0
        return len(self._core.delete(ids, True, True))

    reset = clear

    def _is_persisted(self, oid, typename):
        pattern = "".join(f"[{c}]" if c in "*?[]" else c for c in typename or "*")
        for entry in self._core.list_objects(pattern, _DEFAULT_LIMIT):
            if entry.get("id") == int(oid):
                return bool(entry.get("persisted"))
        return False

    @property
    def meta(self):
        """The cluster as Vineyard shows it: {instance_id: {"instance_id",
        "hostname", "ipc_socket", "rpc_endpoint", "arena_size",
        "arena_used"}} for every member (this daemon alone when it is not
        in a cluster)."""
        return {m["instance_id"]: dict(m) for m in self.cluster_info()["members"]}

    def _this_member(self):
        info = self.cluster_info()
        return next((m for m in info["members"] if m["instance_id"] == info["instance_id"]), {})

    @property
    def ipc_socket(self):
        """The daemon's UNIX socket (for a remote client: the one on its
        machine)."""
        return self._this_member().get("ipc_socket") or self.socket

    @property
    def rpc_endpoint(self):
        """The daemon's RPC endpoint "host:port", or "" if it serves none."""
        return self._this_member().get("rpc_endpoint") or ""

    @property
    def connected(self):
        """True while the daemon answers on this connection."""
        try:
            self._core.status()
        except (DaemonNotReachable, InvalidArgument):
            return False
        return True

    @property
    def version(self):
        """The trellis package version (the wire protocol is version 1)."""
        from trellis import __version__

        return __version__

    # -- daemon ----------------------------------------------------------
    @property
    def status(self):
        """The daemon's status: a dict with every field the daemon reports
        (arena_size, used, free, held_bytes, objects, clients, spilling and
        reload counters, ...; status_fields() says what each one means),
        also readable as attributes, with Vineyard's names too
        (instance_id, memory_usage, memory_limit, ipc_connections, ...).
        A fresh snapshot on every read; ``client.status()`` works as well."""
        return Status(self._core.status(), self.instance_id)

    def locate(self, keys):
        """Where objects live and how big they are, without fetching or
        holding anything: for each key (an object name or id) in order, a
        dict {"id", "typename", "nbytes", "instance_id" (the member that
        made it), "here" (sealed on this daemon)}; a global object adds
        "global": True and "chunks" (one {"id", "typename", "nbytes",
        "instance_id", "member", "here"} per member). An object another
        member made and did not publish has only "id", "instance_id" and
        "here". Raises ObjectNotFound for a name or id nobody knows."""
        if isinstance(keys, (str, int, ObjectID)):
            raise InvalidArgument("locate takes a list of names or ids, "
                                  f"got {type(keys).__name__}")
        keys = list(keys)
        names = [(i, k) for i, k in enumerate(keys) if isinstance(k, str)]
        ids = [(i, as_id(k)) for i, k in enumerate(keys) if not isinstance(k, str)]
        out = [None] * len(keys)
        if names:
            found = self._core.locate([], [k for _, k in names])
            for (i, _), entry in zip(names, found):
                out[i] = entry
        if ids:
            found = self._core.locate([k for _, k in ids], [])
            for (i, _), entry in zip(ids, found):
                out[i] = entry
        return out

    def cluster_info(self):
        """The cluster this daemon belongs to: {"cluster", "backend",
        "instance_id" (the daemon answering), "members": [{"instance_id",
        "hostname", "ipc_socket", "rpc_endpoint", "arena_size",
        "arena_used"}, ...]}. A daemon without --etcd is a cluster of one
        (cluster "", members: itself). Raises DaemonNotReachable if the
        daemon cannot reach etcd."""
        return self._core.cluster_info()


class Status(dict):
    """What ``Client.status`` returns: the daemon's status dict, its fields
    as attributes too, Vineyard's InstanceStatus names as aliases, and
    callable (returning itself) for code that calls ``status()``."""

    _ALIASES = {"memory_usage": "used", "memory_limit": "arena_size",
                "ipc_connections": "clients"}

    def __init__(self, fields, instance_id):
        super().__init__(fields)
        self.setdefault("instance_id", instance_id)

    def __getattr__(self, name):
        key = self._ALIASES.get(name, name)
        if key in self:
            return self[key]
        if name == "rpc_connections":
            return self.get("rpc_clients", 0)
        if name == "deferred_requests":
            return self.get("waiting_get_names", 0)
        if name == "deployment":  # Vineyard's: "distributed" in a cluster
            return "local" if self.get("backend", "local") == "local" else "distributed"
        raise AttributeError(f"status has no field {name!r}")

    def __call__(self):
        return self


def status_fields():
    """{name: description} of every field of Client.status(), from the one
    list the daemon, libtrellis and this package share
    (include/trellis/store_status.h)."""
    return _core.status_fields()


def is_rpc_endpoint(socket):
    """True if `socket` names a daemon's RPC server rather than a UNIX
    socket: it contains ":" and does not start with "/"."""
    return isinstance(socket, str) and ":" in socket and not socket.startswith("/")


def connect(socket=None, *, start=True, size=None, token=None):
    """Connects to the trellisd serving `socket` ($TRELLIS_SOCKET, else
    /tmp/trellis-$UID/trellis.sock).

    A `socket` that contains ":" and does not start with "/" is the RPC
    endpoint "host:port" (or "[v6]:port") of a daemon started with
    ``trellisd --rpc``, possibly on another machine: the client then works
    without a local daemon. The API and errors are the same, but nothing is
    shared: put sends the bytes, get copies them into this process (arrays
    are read-only views of that copy) and ``client.arena`` is empty.
    `token` is the daemon's --rpc-token (default: the content of the file
    $TRELLIS_RPC_TOKEN_FILE, if set); a missing or wrong one raises
    InvalidArgument "RPC token rejected". Nothing is started for an
    endpoint; DaemonNotReachable if nothing serves it.

    If none serves a UNIX socket and `start` is true, starts an embedded
    trellisd child there (arena `size`, else $TRELLIS_SIZE, else the
    daemon's default) that ends with this process. Raises
    DaemonNotReachable if none serves it and none can be started."""
    if is_rpc_endpoint(socket):
        return Client(_core.Client.connect_rpc(socket, token or ""))
    if token is not None:
        raise InvalidArgument("token is for RPC endpoints (host:port), not UNIX sockets")
    path = socket or _daemon.default_socket()
    try:
        return Client(_core.Client.connect(path))
    except DaemonNotReachable:
        if not start:
            raise
    daemon = _daemon.launch(path, size=size, exist_ok=True)  # None: another won
    return Client(_core.Client.connect(path), daemon)
