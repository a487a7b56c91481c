"""Pickled values as a stream of bytes, chunk by chunk (Vineyard's
``vineyard.data.pickle``), in Vineyard's byte layout so either side may be
Vineyard's:

    b"__VINEYARD__", n (8 bytes, big-endian), the n out-of-band buffer sizes
    (8 bytes each), the pickle's size (8 bytes), the pickle (protocol 5),
    then the n buffers.

``PickledReader(value)`` pickles once, keeping large buffers (numpy arrays,
pandas blocks) out of band and uncopied, and hands the stream out with
``read(block_size)`` like a file; ``PickledWriter(store_size)`` takes the
chunks with ``write`` and rebuilds the value on ``close``::

    reader = PickledReader(frame)
    writer = client.create_blob(reader.store_size)   # the stream into a blob
    offset = 0
    while chunk := reader.read(1 << 20):
        writer.copy(offset, chunk)
        offset += len(chunk)
    blob = writer.seal()
    ...
    out = PickledWriter(blob.size)
    for start in range(0, blob.size, 1 << 20):
        out.write(memoryview(blob)[start:start + (1 << 20)])
    out.close()
    frame = out.value
"""

import pickle

from trellis._core import InvalidArgument

MAGIC = b"__VINEYARD__"
_INT = 8  # bytes of each size in the header


def _int_bytes(value):
    return value.to_bytes(_INT, byteorder="big")


class PickledReader:
    """The pickled stream of `value`, read in chunks."""

    def __init__(self, value):
        self._value = value
        self._chunk_index = 0
        self._chunk_offset = 0
        if isinstance(value, (bytes, bytearray, memoryview)):
            # Bytes travel as they are, without a header (as Vineyard's).
            self._chunks = [memoryview(value).cast("B")]
            self._store_size = self._chunks[0].nbytes
            return
        out_of_band = []
        data = pickle.dumps(value, protocol=5, fix_imports=True,
                            buffer_callback=out_of_band.append)
        raws = [buffer.raw() for buffer in out_of_band]
        header = bytearray(MAGIC)
        header += _int_bytes(len(raws))
        for raw in raws:
            header += _int_bytes(raw.nbytes)
        header += _int_bytes(len(data))
        header += data
        self._chunks = [memoryview(header)] + [raw.cast("B") for raw in raws]
        self._store_size = sum(c.nbytes for c in self._chunks)

    @property
    def value(self):
        return self._value

    @property
    def store_size(self):
        """The stream's length in bytes."""
        return self._store_size

    def read(self, block_size):
        """The next at most `block_size` bytes (-1: up to 1 GiB) as a
        memoryview (no copy of the buffers), b"" at the end. A chunk never
        spans two buffers."""
        if block_size == -1:
            block_size = 1 << 30
        if not isinstance(block_size, int) or block_size < 0:
            raise InvalidArgument(f"block_size must be an int >= 0, got {block_size!r}")
        while self._chunk_index < len(self._chunks):
            chunk = self._chunks[self._chunk_index]
            if self._chunk_offset < chunk.nbytes:
                start = self._chunk_offset
                end = min(chunk.nbytes, start + block_size)
                self._chunk_offset = end
                return chunk[start:end]
            self._chunk_index += 1
            self._chunk_offset = 0
        return b""


class PickledWriter:
    """Takes a pickled stream in chunks; ``close()`` rebuilds the value
    (``value``). With `store_size` (the stream's length, if known) the
    buffer is allocated once and a longer stream is refused."""

    def __init__(self, store_size=-1):
        if not isinstance(store_size, int) or store_size < -1:
            raise InvalidArgument(f"store_size must be an int >= 0 (or -1), got {store_size!r}")
        self._buffer = bytearray(max(store_size, 0))
        self._fixed = store_size >= 0
        self._offset = 0
        self._value = None

    @property
    def value(self):
        """The value, once ``close()`` has run."""
        return self._value

    def write(self, chunk):
        view = memoryview(chunk).cast("B")
        end = self._offset + view.nbytes
        if end > len(self._buffer) and not self._fixed:
            self._buffer.extend(bytes(end - len(self._buffer)))
        if end > len(self._buffer):
            raise InvalidArgument(f"write of {view.nbytes} bytes at {self._offset} overruns "
                                  f"the stream's store_size of {len(self._buffer)} bytes")
        self._buffer[self._offset:end] = view
        self._offset = end

    def close(self):
        """Unpickles the stream; a stream without the header is bytes that
        were read as they are, and ``value`` is a memoryview of them (as in
        Vineyard). InvalidArgument if the stream is shorter than its header
        says."""
        stream = memoryview(self._buffer)[:self._offset]
        if bytes(stream[:len(MAGIC)]) != MAGIC:
            self._value = stream
            return
        offset = len(MAGIC)

        def take(size, what):
            nonlocal offset
            if size > stream.nbytes - offset:
                raise InvalidArgument(f"pickled stream truncated: {what} needs {size} bytes "
                                      f"at {offset}, the stream has {stream.nbytes}")
            part = stream[offset:offset + size]
            offset += size
            return part

        count = int.from_bytes(take(_INT, "the buffer count"), "big")
        sizes = [int.from_bytes(take(_INT, "a buffer size"), "big") for _ in range(count)]
        data = take(int.from_bytes(take(_INT, "the pickle size"), "big"), "the pickle")
        buffers = [take(size, f"buffer {i}") for i, size in enumerate(sizes)]
        self._value = pickle.loads(data, fix_imports=True, buffers=buffers)


__all__ = ["PickledReader", "PickledWriter"]
