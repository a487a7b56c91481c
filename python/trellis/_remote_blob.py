"""RemoteBlobBuilder: Vineyard's blob built in a process's own memory and
then sent to a daemon (``client.create_remote_blob(builder)``), for clients
that share no memory with it (a client of a daemon elsewhere, over RPC).

    builder = trellis.RemoteBlobBuilder(1024)
    memoryview(builder)[:5] = b"hello"     # or builder.copy(0, b"hello")
    meta = client.create_remote_blob(builder)
"""

from trellis._core import InvalidArgument


class RemoteBlobBuilder(bytearray):
    """`size` writable bytes in this process, zero-filled. A bytearray (so
    ``memoryview(builder)`` writes in place) of a fixed size."""

    def __init__(self, size):
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"blob size must be an int >= 0, got {size!r}")
        super().__init__(size)

    @property
    def size(self):
        return len(self)

    @property
    def buffer(self):
        """The bytes, as a memoryview."""
        return memoryview(self)

    def copy(self, offset, data):
        """Writes the bytes-like `data` at `offset`."""
        view = memoryview(data).cast("B")
        if offset < 0 or offset + view.nbytes > self.size:
            raise InvalidArgument(f"copy of {view.nbytes} bytes at offset {offset} overruns "
                                  f"a remote blob of {self.size} bytes")
        self[offset:offset + view.nbytes] = view

    def __repr__(self):
        return f"RemoteBlobBuilder({self.size} bytes)"
