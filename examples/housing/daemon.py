"""Getting a trellis daemon for the pipeline's trellis variant.

Three ways, chosen by the driver's --daemon option:

- "embedded": the Python SDK's trellis.start_daemon(detach=True) on a private
  socket (what `make demo` uses);
- "trellisd": an explicitly started trellisd binary;
- "external": a daemon that already serves TRELLIS_SOCKET; never stopped.

Both started kinds get --size and, by default, --reserve: the arena is
pre-faulted at start, as a long-running daemon's arena would be warm (writes
into never-touched shared pages run at a fraction of memcpy speed).

Every mode returns a Daemon whose startup_s is the time from asking for the
daemon until a client could talk to it (pre-faulting included). It is
reported by the driver but not counted as exchange time: a node runs one
daemon for many pipelines.
"""

import os
import signal
import subprocess
import time

SOCKET_WAIT_S = 120.0  # pre-faulting a large arena takes seconds per GiB


class Daemon:
    """A running daemon; stop() ends it unless it was external."""

    def __init__(self, mode, socket, startup_s, size=None, reserve=False,
                 process=None, stop_fn=None):
        self.mode = mode
        self.socket = socket
        self.startup_s = startup_s
        self.size = size
        self.reserve = reserve
        self._process = process
        self._stop_fn = stop_fn

    def describe(self):
        return {"mode": self.mode, "socket": self.socket,
                "startup_s": self.startup_s, "size": self.size,
                "reserve": self.reserve}

    def stop(self):
        """Stops a daemon this module started; idempotent."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._stop_fn is not None:
            stop, self._stop_fn = self._stop_fn, None
            stop()


def _wait_until_serving(socket, process=None):
    """Blocks until a trellis client can connect to `socket` and get status.

    Never starts a daemon itself. Raises RuntimeError if `process` exits
    first or SOCKET_WAIT_S passes.
    """
    import trellis
    deadline = time.monotonic() + SOCKET_WAIT_S
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"trellisd exited with status {process.returncode}")
        if os.path.exists(socket):
            try:
                with trellis.connect(socket, start=False) as client:
                    client.status()
                return
            except ConnectionError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no daemon answered on {socket} "
                               f"within {SOCKET_WAIT_S:.0f} s")
        time.sleep(0.01)


def start_trellisd(binary, socket, size, reserve=True, log_level="warn"):
    """Starts `binary` on `socket` with an arena of `size` bytes."""
    cmd = [binary, "--socket", socket, "--size", str(size),
           "--log-level", log_level]
    if reserve:
        cmd.append("--reserve")
    t0 = time.perf_counter()
    process = subprocess.Popen(cmd)
    try:
        _wait_until_serving(socket, process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Daemon("trellisd", socket, time.perf_counter() - t0, size=size,
                  reserve=reserve, process=process)


def start_embedded(socket, size, reserve=True):
    """Starts the SDK's embedded daemon, detached, on `socket`.

    trellis.start_daemon() returns once the daemon accepts connections (after
    pre-faulting the arena when `reserve`).
    """
    import trellis
    t0 = time.perf_counter()
    handle = trellis.start_daemon(socket=socket, size=size, detach=True,
                                  reserve=reserve)
    _wait_until_serving(socket)
    return Daemon("embedded", socket, time.perf_counter() - t0, size=size,
                  reserve=reserve, stop_fn=handle.stop)


def use_external(socket):
    """Uses the daemon already serving `socket`."""
    t0 = time.perf_counter()
    _wait_until_serving(socket)
    return Daemon("external", socket, time.perf_counter() - t0)
