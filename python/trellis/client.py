"""trellis.Client: the Python client of a local trellisd.

    with trellis.connect() as client:
        oid = client.put(df, name="x_train", persist=True)
        df = client.get(name="x_train")

Round trips: ``put`` of any value costs one CreateObject with the whole
tree, name and persist flag; when its buffers exceed INLINE_PUT_BYTES
they go first into a blob of their own (one CreateBlobs more), else they
travel with the tree. ``get(oid)`` and ``get(name=...)`` cost one
(GetMeta). Every call that
waits on the daemon or copies bytes releases the GIL.

Thread-safety: a Client may be shared by threads; its requests are
serialised on one connection, so a blocking ``get_name(wait=True)`` delays
the other threads (use one client per thread for concurrency). After
``fork`` the child must connect anew (module-level calls do so by
themselves).
"""

import math
import collections.abc
import warnings

from trellis import _codec, _core, _daemon, _global
from trellis._core import DaemonNotReachable, InvalidArgument, ObjectID

# Converters register themselves on import.
from trellis import _builtins, _numpy, _pickle  # noqa: F401,E402

_DEFAULT_LIMIT = 100000

# The largest put whose buffers go inline in its CreateObject request
# (bench/small_frames.py measures both ways).
INLINE_PUT_BYTES = 64 * 1024


def as_id(value):
    """An ObjectID from an ObjectID, its str form or its int value."""
    if isinstance(value, ObjectID):
        return value
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


def _timeout_ms(timeout):
    """Milliseconds for the daemon; 0 means no limit (timeout=None)."""
    if timeout is None:
        return 0
    if not isinstance(timeout, (int, float)) or timeout < 0 or math.isnan(timeout):
        raise InvalidArgument(f"timeout must be None or seconds >= 0, got {timeout!r}")
    return max(1, math.ceil(timeout * 1000))


class ObjectMeta(collections.abc.Mapping):
    """The metadata tree of an object, read-only and dict-like.

    ``meta["typename"]``, ``meta["fields"]`` (a dict) and ``meta["members"]``
    (a dict of ObjectMeta) mirror the JSON form of docs/format.md; the
    properties ``typename``, ``id`` (ObjectID), ``nbytes``, ``fields``,
    ``members`` and ``member(name)`` are shortcuts. A tree from ``get_meta``
    keeps its blobs readable while it lives: ``meta.blob()`` views a blob
    node's bytes.
    """

    def __init__(self, tree, ctx=None):
        self._tree = tree
        self._ctx = ctx

    def __getitem__(self, key):
        if key == "members":
            return self.members
        return self._tree[key]

    def __iter__(self):
        return iter(self._tree)

    def __len__(self):
        return len(self._tree)

    @property
    def typename(self):
        return self._tree.get("typename")

    @property
    def id(self):
        return ObjectID(self._tree["id"])

    @property
    def nbytes(self):
        return self._tree.get("nbytes", 0)

    @property
    def fields(self):
        return self._tree.get("fields", {})

    @property
    def instance_id(self):
        """The daemon that serves this object (for a chunk of a global
        object: the member that holds it)."""
        return self._tree.get("instance_id")

    @property
    def is_global(self):
        """True for a global object (docs/format.md, "Global objects")."""
        return bool(self._tree.get("global", False))

    @property
    def members(self):
        return {name: ObjectMeta(node, self._ctx)
                for name, node in self._tree.get("members", {}).items()}

    def member(self, name):
        try:
            return ObjectMeta(self._tree["members"][name], self._ctx)
        except KeyError:
            raise _core.ObjectNotFound(
                f"{self.typename} {self._tree.get('id')} has no member {name!r}") from None

    def blob(self):
        """A read-only Blob of this blob node's bytes."""
        if self._ctx is None:
            raise InvalidArgument("this tree was not gotten with get_meta; no bytes are mapped")
        return self._ctx.blob(self._tree)

    def to_dict(self):
        """The tree as plain nested dicts (ids as ints)."""
        return self._tree

    def __repr__(self):
        ident = self._tree.get("id")
        ident = str(ObjectID(ident)) if isinstance(ident, int) else "new"
        return f"ObjectMeta({self.typename} {ident}, fields={self.fields!r}, members={sorted(self._tree.get('members', {}))})"


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

    def put(self, value, name=None, persist=False, overwrite=True):
        """Stores `value` (see docs/format.md for how each type is laid
        out) and returns its ObjectID. With `name`, binds the name in the
        same request (rebinding it unless overwrite=False); with `persist`,
        publishes the object to the metadata store.

        Raises UnsupportedType (a TypeError) if the value has no converter
        and cannot be pickled, OutOfMemory if the arena cannot hold it."""
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgument(f"name must be a non-empty str, got {name!r}")
        if persist and self._private_daemon():
            _warn_private_persist()
        tree, packer = _codec.encode_root(value)
        writer = None
        if packer.referenced:
            # Small buffers travel with the tree (one round trip, the daemon
            # copies them); beyond INLINE_PUT_BYTES writing straight into
            # the arena is cheaper than pushing the bytes through the socket.
            if packer.size <= INLINE_PUT_BYTES and packer.size <= self._core.max_inline_blob:
                writer = self._core.inline_blob(packer.size)
            else:
                writer = self._core.create_blob(packer.size)
        try:
            if writer is not None:
                packer.write(writer)
            return self._core.create_object(tree, _codec.BLOB, writer, name or "",
                                            bool(persist), bool(overwrite))
        finally:
            if writer is not None and writer.open:
                writer.abort()  # failed before the object took the blob

    def get(self, oid=None, *, name=None, wait=False, timeout=None, fetch=False):
        """The value of object `oid`, or of the object bound to `name`.

        With `wait`, blocks until the name is bound (up to `timeout`
        seconds, then Timeout). Arrays, and numeric columns of DataFrames,
        are read-only views of shared memory. An object another member of
        the cluster made is ObjectNotFound saying where it lives, unless
        `fetch=True`: the daemon then copies it here first (one transfer
        however many ask at once) and keeps the copy, so later gets are
        local. Raises ObjectNotFound naming the id or name, or naming the
        member that made it when that member is gone."""
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
        return _codec.decode_root(tree, lease)

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

    def list_names(self, pattern="*", limit=_DEFAULT_LIMIT):
        """{name: ObjectID} of the names matching the glob `pattern`."""
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

    def list_objects(self, pattern="*", limit=_DEFAULT_LIMIT):
        """Shallow ObjectMetas of the objects whose type name matches."""
        return [ObjectMeta(tree) for tree in self._core.list_objects(pattern, limit)]

    def get_meta(self, oid, fetch=False):
        """The complete metadata tree of an object (one round trip); with
        `fetch`, as for get."""
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

    # -- daemon ----------------------------------------------------------
    def status(self):
        """The daemon's status as a dict with every field the daemon
        reports (arena_size, used, free, held_bytes, objects, clients,
        spilling and reload counters, ...); status_fields() says what
        each one means (trellis.client.status_fields())."""
        return self._core.status()

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
