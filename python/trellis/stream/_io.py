"""Where a batch job's rows come from and where its output goes.

Sources yield items: CSV lines (bytes, no line ending) or, for
``from_frames``, DataFrames. The first CSV line is the header. Sinks take
the bytes of each output batch, in input order.

The framed protocol is the seed's (Wallaroo's TCP source and sink): each
frame is a 4-byte big-endian length and that many bytes; a frame holding
the single byte 0x04 (EOT) ends the input."""

import os
import socket
import struct
import sys

from trellis import InvalidArgument

EOT = b"\x04"
#: A frame longer than this is refused as malformed (a CSV line is far
#: shorter; a garbage length would otherwise make us wait for gigabytes).
MAX_FRAME = 16 << 20
_LENGTH = struct.Struct(">I")


class SourceError(InvalidArgument):
    """The input is malformed; the message says where."""


# --- sources ----------------------------------------------------------------

class Source:
    kind = "lines"  # or "frames"

    def items(self):
        raise NotImplementedError

    def fraction(self):
        """How much of the input has been read (0..1), or None if unknown."""
        return None

    def close(self):
        pass

    def describe(self):
        return type(self).__name__


class FileSource(Source):
    """Lines of a CSV file (a trailing newline does not make an empty row)."""

    def __init__(self, path):
        self.path = path
        self._size, self._read = None, 0

    def items(self):
        with open(self.path, "rb") as f:
            self._size = os.fstat(f.fileno()).st_size
            for line in f:
                self._read += len(line)
                line = line.rstrip(b"\r\n")
                if line:
                    yield line

    def fraction(self):
        return self._read / self._size if self._size else None

    def describe(self):
        return f"file {self.path}"


class StdinSource(FileSource):
    def __init__(self):
        super().__init__(None)

    def items(self):
        for line in sys.stdin.buffer:
            line = line.rstrip(b"\r\n")
            if line:
                yield line

    def describe(self):
        return "stdin"


def read_frames(read, limit=MAX_FRAME):
    """Yields the payloads of frames read with `read(n)` (returns up to n
    bytes, b"" at the end) until the EOT frame. Raises SourceError naming
    the frame and byte offset for a length over `limit`, an input that
    ends inside a frame or without EOT, and a payload that is not UTF-8."""
    offset, number = 0, 0

    def exactly(n, what, have=b""):
        chunks, got = [have], len(have)
        while got < n:
            chunk = read(n - got)
            if not chunk:
                raise SourceError(f"frame {number} at byte {offset}: the input "
                                  f"ended inside its {what} ({got} of {n} bytes)")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    while True:
        head = read(_LENGTH.size)
        if not head:
            raise SourceError(f"the input ended after {number} frames without "
                              "the end-of-input frame (a single 0x04 byte)")
        if len(head) < _LENGTH.size:
            head = exactly(_LENGTH.size, "length", head)
        (length,) = _LENGTH.unpack(head)
        if length > limit:
            raise SourceError(f"frame {number} at byte {offset}: length {length} "
                              f"exceeds the limit of {limit} bytes")
        payload = exactly(length, "payload")
        if payload == EOT:
            return
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SourceError(f"frame {number} at byte {offset}: not UTF-8 "
                              f"({e.reason} at byte {e.start} of the line)") from None
        yield payload
        offset += _LENGTH.size + length
        number += 1


class TcpSource(Source):
    """Listens on host:port and reads framed lines from the first client
    (the seed's sender connects, sends, closes). `port` 0 picks one; the
    chosen port is `self.port` as soon as the source is made."""

    def __init__(self, host="127.0.0.1", port=0, limit=MAX_FRAME):
        self.limit = limit
        self._server = socket.create_server((host, port))
        self.host, self.port = self._server.getsockname()[:2]

    def items(self):
        conn, _ = self._server.accept()
        with conn:
            reader = conn.makefile("rb")
            yield from read_frames(reader.read, self.limit)

    def close(self):
        self._server.close()

    def describe(self):
        return f"framed TCP on {self.host}:{self.port}"


class FrameSource(Source):
    """DataFrames from Python, each one batch as it is (no header line)."""
    kind = "frames"

    def __init__(self, frames):
        self.frames = frames

    def items(self):
        yield from self.frames

    def describe(self):
        return "DataFrames"


# --- sinks ------------------------------------------------------------------

class Sink:
    def write(self, data):
        raise NotImplementedError

    def close(self):
        pass


class FileSink(Sink):
    def __init__(self, path):
        self.path = path
        self._f = open(path, "wb")

    def write(self, data):
        self._f.write(data)

    def close(self):
        self._f.close()


class StdoutSink(Sink):
    def write(self, data):
        sys.stdout.buffer.write(data)

    def close(self):
        sys.stdout.buffer.flush()


class TcpSink(Sink):
    """Connects to host:port and sends each output line as a frame, then
    the EOT frame (what the seed's data_receiver --framed reads)."""

    def __init__(self, host, port):
        self._sock = socket.create_connection((host, port))

    def write(self, data):
        lines = bytes(data).splitlines()
        self._sock.sendall(b"".join(_LENGTH.pack(len(line)) + line for line in lines))

    def close(self):
        try:
            self._sock.sendall(_LENGTH.pack(1) + EOT)
        finally:
            self._sock.close()


def send_framed(lines, host, port):
    """The seed's sender: each line framed, then EOT, to host:port."""
    with socket.create_connection((host, port)) as sock:
        for line in lines:
            sock.sendall(_LENGTH.pack(len(line)) + line)
        sock.sendall(_LENGTH.pack(1) + EOT)


def receive_framed(server_socket, out):
    """The seed's data_receiver --framed: accepts one client on
    `server_socket` and writes each frame's line plus a newline to the
    binary file `out` until EOT; returns the number of lines."""
    conn, _ = server_socket.accept()
    n = 0
    with conn:
        reader = conn.makefile("rb")
        for line in read_frames(reader.read, limit=1 << 30):
            out.write(line + b"\n")
            n += 1
    return n
