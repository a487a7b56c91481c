"""trellis: a shared-memory object store for data pipelines.

    import trellis
    trellis.put(X_train, name="x_train", persist=True)   # step 1, process A
    X_train = trellis.get(name="x_train", fetch=True)    # step 2, process B

Module-level calls use a default client, connected on first use to
$TRELLIS_SOCKET (else /tmp/trellis-$UID/trellis.sock), starting an embedded
daemon there if none runs. ``trellis.connect()`` returns a client of your
own. numpy arrays, pandas DataFrames/Series and Python builtins are stored
in layouts that ``get`` reads in place (docs/format.md); anything else is
pickled (protocol 5, large buffers still out of band).

Errors subclass TrellisError and the matching builtin: ObjectNotFound
(KeyError), OutOfMemory (MemoryError), InvalidArgument (ValueError),
DaemonNotReachable (ConnectionError), Timeout (TimeoutError),
UnsupportedType (TypeError), ObjectExists (ValueError), NotSealed
(RuntimeError), TrellisIOError (OSError), Unsupported (NotImplementedError).
"""

import inspect
import os
import threading

from trellis._core import (  # noqa: F401
    Blob,
    BlobWriter,
    DaemonNotReachable,
    InvalidArgument,
    NotSealed,
    ObjectExists,
    ObjectID,
    ObjectNotFound,
    OutOfMemory,
    Timeout,
    TrellisError,
    TrellisIOError,
    Unsupported,
    UnsupportedType,
)
from trellis import _daemon
from trellis._daemon import Daemon, default_socket
from trellis.client import Client, connect
from trellis._meta import Object, ObjectMeta
from trellis._global import GlobalObject
from trellis._remote_blob import RemoteBlobBuilder
from trellis._vineyard_names import *  # noqa: F401,F403  Vineyard's names
from trellis import _vineyard_names
import trellis.core  # noqa: F401,E402  (vineyard.core)
import trellis.data  # noqa: F401,E402  (vineyard.data; registers the builtin converters)

__version__ = "0.1.0"

__all__ = [
    "connect", "Client", "ObjectID", "ObjectMeta", "Blob", "BlobWriter", "Daemon",
    "put", "get", "put_name", "get_name", "drop_name", "list_names", "persist",
    "delete", "list_objects", "get_meta", "create_blob", "get_blob", "status",
    "cluster_info", "locate", "put_global", "gather", "GlobalObject",
    "pin", "unpin", "evict", "memory_trim",
    "start_daemon", "stop_daemon", "default_client", "default_socket",
    "TrellisError", "ObjectNotFound", "ObjectExists", "NotSealed", "OutOfMemory",
    "InvalidArgument", "TrellisIOError", "DaemonNotReachable", "Timeout",
    "Unsupported", "UnsupportedType", "Object", "RemoteBlobBuilder", "core", "data",
] + _vineyard_names.__all__

_lock = threading.Lock()
_default = None  # (pid, Client)


def default_client():
    """The client module-level calls use; connects (and starts the embedded
    daemon if needed) on first use, and again in a forked child."""
    global _default
    with _lock:
        if _default is None or _default[0] != os.getpid():
            _default = (os.getpid(), connect())
        return _default[1]


def start_daemon(socket=None, size=None, detach=True, reserve=False, spill_dir=None,
                 metrics=None, busy_poll_us=None, huge_pages=True):
    """Starts trellisd on `socket` (default: the default socket) and returns
    its Daemon handle. With `detach` (the default) it outlives this process
    until ``stop_daemon``; otherwise it ends with this process. Raises
    ObjectExists if a daemon already serves the socket. With `spill_dir`,
    objects nobody reads are spilled there when memory runs short. With
    `metrics` ("[HOST:]PORT", port 0 for a free one), it serves Prometheus
    metrics and a status page over HTTP (``daemon.metrics_url``). With
    `busy_poll_us`, it polls that long for the next request before it
    sleeps (trellisd --busy-poll-us: CPU for latency; docs/operations.md).
    `huge_pages=False` keeps the arena in 4 KiB pages where the kernel would
    give it 2 MiB ones (trellisd --huge-pages off; docs/operations.md)."""
    return _daemon.launch(socket, size=size, reserve=reserve, detach=detach,
                          spill_dir=spill_dir, metrics=metrics, busy_poll_us=busy_poll_us,
                          huge_pages=huge_pages)


def stop_daemon(socket=None, timeout=10.0):
    """Stops the daemon trellis started on `socket` (in any process).
    Returns False if there was none. Drops the default client if it was
    connected there."""
    global _default
    path = socket or default_socket()
    with _lock:
        if _default is not None and _default[1].socket == path:
            _default[1].close()
            _default = None
    return _daemon.stop(path, timeout)


def _forward(name):
    """trellis.<name>: Client.<name> called on the default client, with its
    signature and doc (arguments are checked by the method)."""
    method = getattr(Client, name)

    def call(*args, **kwargs):
        return method(default_client(), *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    signature = inspect.signature(method)
    call.__signature__ = signature.replace(
        parameters=list(signature.parameters.values())[1:])  # no self
    return call


def status():
    """The default client's ``status`` (a dict of the daemon's fields)."""
    return default_client().status


for _name in ("put", "get", "put_name", "get_name", "drop_name", "list_names",
              "persist", "delete", "list_objects", "get_meta", "create_blob",
              "get_blob", "cluster_info", "locate", "put_global", "gather", "pin", "unpin", "evict", "memory_trim"):
    globals()[_name] = _forward(_name)
del _name
