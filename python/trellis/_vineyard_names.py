"""Vineyard's names for trellis's types, so that a program written for
Vineyard runs after ``import trellis as vineyard`` (docs/vineyard_compat.md
lists what matches and what differs).

Vineyard's exceptions are aliases of trellis's, which keep subclassing the
builtins (ObjectNotExistsException is ObjectNotFound, a KeyError).
"""

from trellis._core import (
    Blob,
    BlobWriter,
    DaemonNotReachable,
    InvalidArgument,
    NotSealed,
    ObjectExists,
    ObjectNotFound,
    OutOfMemory,
    Timeout,
    TrellisError,
    TrellisIOError,
    Unsupported,
    UnsupportedType,
)
from trellis.client import Client


class ObjectName(str):
    """A name an object is bound to (Vineyard's ObjectName): a str, so any
    call that takes a name takes it."""

    def __repr__(self):
        return f"ObjectName({str(self)!r})"


BlobBuilder = BlobWriter
RemoteBlob = Blob  # what get_blob returns, whichever client got it
IPCClient = Client
RPCClient = Client

VineyardException = TrellisError
ObjectNotExistsException = ObjectNotFound
ObjectExistsException = ObjectExists
ObjectNotSealedException = NotSealed
NotEnoughMemoryException = OutOfMemory
InvalidException = InvalidArgument
UserInputErrorException = InvalidArgument
AssertionFailedException = InvalidArgument
KeyErrorException = ObjectNotFound
IOErrorException = TrellisIOError
ConnectionFailedException = DaemonNotReachable
ConnectionErrorException = DaemonNotReachable
NotImplementedException = Unsupported
TypeErrorException = UnsupportedType
TimeoutException = Timeout

__all__ = [
    "ObjectName", "BlobBuilder", "RemoteBlob", "IPCClient", "RPCClient",
    "VineyardException", "ObjectNotExistsException", "ObjectExistsException",
    "ObjectNotSealedException", "NotEnoughMemoryException", "InvalidException",
    "UserInputErrorException", "AssertionFailedException", "KeyErrorException",
    "IOErrorException", "ConnectionFailedException", "ConnectionErrorException",
    "NotImplementedException", "TypeErrorException", "TimeoutException",
]
