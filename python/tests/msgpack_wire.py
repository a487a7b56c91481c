"""The wire protocol (docs/protocol.md) spoken from Python with python3-msgpack,
for tests that check trellis's MessagePack against that independent
implementation: a raw connection that sends hand-made bodies to a daemon, and
a proxy that records the bytes a trellis client and a daemon exchange."""

import os
import socket
import struct
import threading

import msgpack

HEADER = struct.Struct("<IHH")  # body_length, type, flags
HELLO, CREATE_OBJECT, GET_META, RELEASE = 1, 6, 7, 9
REPLY, ERROR = 256, 257


def frame(kind, body):
    """One frame of message type `kind` around the encoded `body`."""
    return HEADER.pack(len(body), kind, 0) + body


def split_frames(stream):
    """[(type, body bytes)] of a byte stream of whole frames."""
    out, at = [], 0
    while at + HEADER.size <= len(stream):
        length, kind, _ = HEADER.unpack_from(stream, at)
        out.append((kind, bytes(stream[at + HEADER.size:at + HEADER.size + length])))
        at += HEADER.size + length
    return out


class RawConnection:
    """A client connection that sends bodies as given (bytes) and returns
    replies undecoded."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buffer = b""
        kind, body = self.call(HELLO, msgpack.packb({"version": 1}))
        assert kind == REPLY, msgpack.unpackb(body)

    def call(self, kind, body):
        """(reply type, reply body bytes) for one request."""
        self.sock.sendall(frame(kind, body))
        return self.next_frame()

    def next_frame(self):
        """The next frame, or None once the daemon closed the connection."""
        while True:
            if len(self.buffer) >= HEADER.size:
                length = HEADER.unpack_from(self.buffer)[0]
                if len(self.buffer) >= HEADER.size + length:
                    (kind, body), = split_frames(self.buffer[:HEADER.size + length])
                    self.buffer = self.buffer[HEADER.size + length:]
                    return kind, body
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 20, 4)
            for fd in fds:  # the arena, with Hello's reply
                os.close(fd)
            if not data:
                return None
            self.buffer += data

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RecordingProxy:
    """Serves one client connection on `path`, forwarding it (fds included)
    to the daemon at `daemon_path` and recording both directions."""

    def __init__(self, path, daemon_path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.daemon_path = daemon_path
        self.streams = {"request": bytearray(), "reply": bytearray()}
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        client, _ = self.listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.daemon_path)
        pumps = [threading.Thread(target=self._pump, args=(client, upstream, "request")),
                 threading.Thread(target=self._pump, args=(upstream, client, "reply"))]
        for p in pumps:
            p.start()
        for p in pumps:
            p.join()
        client.close()
        upstream.close()

    def _pump(self, src, dst, direction):
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(src, 1 << 20, 4)
            except OSError:
                data, fds = b"", []
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            self.streams[direction] += data
            if fds:
                socket.send_fds(dst, [data], fds)
            else:
                dst.sendall(data)
            for fd in fds:
                os.close(fd)

    def frames(self, direction):
        """[(type, body bytes)] recorded so far in "request" or "reply"."""
        return split_frames(bytes(self.streams[direction]))

    def wait(self, timeout=10):
        """Waits for the client and the daemon to have closed."""
        self.thread.join(timeout)
        self.listener.close()
