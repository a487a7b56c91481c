"""Finding, starting and stopping trellisd.

The embedded daemon: ``trellis.connect()`` with no daemon serving the socket
starts one as a child (``launch``). A child started with ``detach=False``
dies with the Python process that started it (SIGTERM at exit, and the
kernel sends SIGTERM should the process die without running exit handlers);
``detach=True`` leaves it running for other processes, and ``stop_daemon``
ends it later from any process through the pid file written next to the
socket.
"""

import atexit
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket as _socket
import subprocess
import time

from trellis._core import DaemonNotReachable, InvalidArgument, ObjectExists

_PR_SET_PDEATHSIG = 1

# Daemons this process started, by socket path.
_children = {}


def default_socket():
    """$TRELLIS_SOCKET if set, else /tmp/trellis-$UID/trellis.sock (the
    same rule as the C++ client and trellisd)."""
    env = os.environ.get("TRELLIS_SOCKET")
    if env:
        return env
    return f"/tmp/trellis-{os.getuid()}/trellis.sock"


def find_trellisd():
    """Path of the trellisd binary: $TRELLISD, else the one built with this
    package (trellis/_config.py, written by CMake), else trellisd on PATH."""
    env = os.environ.get("TRELLISD")
    if env:
        if not os.access(env, os.X_OK):
            raise DaemonNotReachable(f"$TRELLISD={env} is not an executable")
        return env
    try:
        from trellis import _config

        if os.access(_config.TRELLISD, os.X_OK):
            return _config.TRELLISD
    except ImportError:
        pass
    found = shutil.which("trellisd")
    if found:
        return found
    raise DaemonNotReachable(
        "cannot find the trellisd binary: set $TRELLISD or put it on PATH")


def serving(path):
    """True if something accepts connections on the UNIX socket `path`."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Daemon:
    """A trellisd process started by ``launch``.

    Attributes: ``socket`` (path it serves), ``pid``, ``log`` (path of its
    log file), ``detached``, ``rpc_endpoint`` ("HOST:PORT" if started with
    ``rpc``, else None), ``metrics_url`` ("http://HOST:PORT/" if started with
    ``metrics``, else None).
    """

    def __init__(self, socket, process, log, detached):
        self.socket = socket
        self.pid = process.pid
        self.log = log
        self.detached = detached
        self.rpc_endpoint = None
        self.metrics_url = None
        self._process = process

    def alive(self):
        return self._process.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout` seconds. Idempotent."""
        if _children.get(self.socket) is self:
            del _children[self.socket]
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        _remove_pid_file(self.socket, self.pid)

    def __repr__(self):
        state = "running" if self.alive() else "stopped"
        return f"<trellis.Daemon pid={self.pid} socket={self.socket!r} {state}>"


def _pid_file(socket):
    return socket + ".pid"


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_pid_file(socket, pid):
    """Removes the pid file of `socket` if it names `pid`."""
    try:
        with open(_pid_file(socket)) as f:
            if f.read().strip() != str(pid):
                return
    except OSError:
        return
    _remove(_pid_file(socket))


@contextlib.contextmanager
def _launch_lock(socket):
    """Serialises daemon starts on one socket across processes, so two
    connect() calls racing to start the embedded daemon start one."""
    with open(socket + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _die_with_parent():
    # Runs in the child between fork and exec. The kernel signals the child
    # when the thread that forked it exits; connect() is normally called
    # from a long-lived thread, which is the case this protects.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def launch(socket=None, size=None, reserve=False, detach=False,
           log_level="warn", timeout=30.0, exist_ok=False, spill_dir=None,
           rpc=None, rpc_token=None, metrics=None, busy_poll_us=None,
           huge_pages=True):
    """Starts trellisd on `socket` and returns once it accepts connections.

    `size`: arena size such as "512M" or an int of bytes (default
    $TRELLIS_SIZE, else the daemon's default, a quarter of memory).
    `reserve`: pre-fault the arena. `spill_dir` (default
    $TRELLIS_SPILL_DIR, else none): where cold objects go when memory runs
    short. `rpc` ("[HOST:]PORT", or an int port; 0 picks a free one): also
    serve over TCP, loopback unless HOST says otherwise, with `rpc_token`
    (a token file, mode 0600) required for any other address; the
    daemon's ``rpc_endpoint`` is then "HOST:PORT" with the chosen port.
    `metrics` ("[HOST:]PORT" as for rpc): serve Prometheus metrics and the
    status page over HTTP there; ``metrics_url`` is then its address.
    `busy_poll_us` (default $TRELLIS_BUSY_POLL_US, else 0): microseconds
    the daemon polls for the next request before it sleeps, or "auto" for
    a window that follows the gaps between requests (--busy-poll-us). `huge_pages=False`: the arena in 4 KiB pages even
    where it could have 2 MiB ones (--huge-pages off).
    If a daemon already serves `socket`,
    returns None with `exist_ok`, else raises ObjectExists. Raises
    DaemonNotReachable (quoting the daemon's log) if it exits or does not
    serve within `timeout` seconds.
    """
    socket = socket or default_socket()
    directory = os.path.dirname(socket)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    with _launch_lock(socket):
        if serving(socket):
            if exist_ok:
                return None
            raise ObjectExists(f"a trellis daemon already serves {socket}")
        return _start(socket, size, reserve, detach, log_level, timeout,
                      spill_dir, rpc, rpc_token, metrics, busy_poll_us, huge_pages)


def _rpc_args(socket, rpc, rpc_token):
    """trellisd's RPC flags for launch(rpc=, rpc_token=), the port file and
    the host the endpoint is reached at ([], None, None without rpc)."""
    if rpc is None:
        if rpc_token is not None:
            raise InvalidArgument("rpc_token needs rpc (the endpoint to serve)")
        return [], None, None
    if isinstance(rpc, int) and not isinstance(rpc, bool):
        rpc = str(rpc)
    if not isinstance(rpc, str) or not rpc:
        raise InvalidArgument(f"rpc must be '[HOST:]PORT' or an int port, got {rpc!r}")
    host = rpc.rpartition(":")[0] or "127.0.0.1"
    port_file = socket + ".rpc-port"
    _remove(port_file)
    args = ["--rpc", rpc, "--rpc-port-file", port_file]
    if rpc_token is not None:
        args += ["--rpc-token", os.fspath(rpc_token)]
    return args, port_file, host


def _busy_poll_args(busy_poll_us):
    """trellisd's --busy-poll-us flag for launch(busy_poll_us=) or
    $TRELLIS_BUSY_POLL_US ([] if neither is set: trellisd's default, 0)."""
    raw = busy_poll_us if busy_poll_us is not None else os.environ.get("TRELLIS_BUSY_POLL_US")
    if raw is None:
        return []
    if raw == "auto":
        return ["--busy-poll-us", "auto"]
    if type(raw) is int:
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw)
    else:
        value = -1
    if not 0 <= value <= 100000:
        raise InvalidArgument(f"busy_poll_us (or $TRELLIS_BUSY_POLL_US) must be 'auto' or an "
                              f"int of microseconds from 0 to 100000, got {raw!r}")
    return ["--busy-poll-us", str(value)]


def _metrics_args(socket, metrics):
    """trellisd's --metrics flags, the port file and the host ([], None,
    None without metrics)."""
    if metrics is None:
        return [], None, None
    if isinstance(metrics, int) and not isinstance(metrics, bool):
        metrics = str(metrics)
    if not isinstance(metrics, str) or not metrics:
        raise InvalidArgument(f"metrics must be '[HOST:]PORT' or an int port, got {metrics!r}")
    port_file = socket + ".metrics-port"
    _remove(port_file)
    host = metrics.rpartition(":")[0] or "127.0.0.1"
    return ["--metrics", metrics, "--metrics-port-file", port_file], port_file, host


def _start(socket, size, reserve, detach, log_level, timeout, spill_dir,
           rpc=None, rpc_token=None, metrics=None, busy_poll_us=None, huge_pages=True):
    if size is None:
        size = os.environ.get("TRELLIS_SIZE")
    log = socket + ".log"
    cmd = [find_trellisd(), "--socket", socket, "--log-level", log_level]
    if size is not None:
        if isinstance(size, int):
            size = str(size)
        if not isinstance(size, str) or not size:
            raise InvalidArgument(f"daemon size must be like '512M' or an int, got {size!r}")
        cmd += ["--size", size]
    if reserve:
        cmd.append("--reserve")
    if not huge_pages:
        cmd += ["--huge-pages", "off"]
    spill_dir = spill_dir or os.environ.get("TRELLIS_SPILL_DIR")
    if spill_dir:
        cmd += ["--spill-dir", os.fspath(spill_dir)]
    cmd += _busy_poll_args(busy_poll_us)
    rpc_args, port_file, rpc_host = _rpc_args(socket, rpc, rpc_token)
    cmd += rpc_args
    metrics_args, metrics_port_file, metrics_host = _metrics_args(socket, metrics)
    cmd += metrics_args
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent)
    daemon = Daemon(socket, process, log, detach)
    deadline = time.monotonic() + timeout
    while not serving(socket):
        if process.poll() is not None or time.monotonic() > deadline:
            daemon.stop()
            raise DaemonNotReachable(
                f"trellisd did not start on {socket}: {_tail(log)}")
        time.sleep(0.005)
    if port_file is not None:  # written before the socket serves
        with open(port_file) as f:
            daemon.rpc_endpoint = f"{rpc_host}:{int(f.read())}"
    if metrics_port_file is not None:  # likewise
        with open(metrics_port_file) as f:
            daemon.metrics_url = f"http://{metrics_host}:{int(f.read())}/"
    with open(_pid_file(socket), "w") as f:
        f.write(f"{process.pid}\n")
    if not detach:
        _children[socket] = daemon
    return daemon


def _tail(path, limit=600):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "(no log)"
    return text[-limit:] or "(empty log)"


def stop(socket=None, timeout=10.0):
    """Stops the trellisd serving `socket` that trellis started (in this or
    another process, through its pid file). Returns True if one was stopped.
    A daemon that trellis did not start (no pid file) is left alone."""
    socket = socket or default_socket()
    child = _children.get(socket)
    if child is not None:
        child.stop(timeout)
        return True
    try:
        with open(_pid_file(socket)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return False
    if not _is_trellisd_for(pid, socket):
        _remove(_pid_file(socket))  # stale: that process is gone
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_trellisd_for(pid, socket):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    _remove(_pid_file(socket))
    return True


def _is_trellisd_for(pid, socket):
    """True if process `pid` is a live trellisd serving `socket` (so a
    recycled pid is never signalled)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return (state != b"Z" and bool(args) and
            os.path.basename(args[0]) == b"trellisd" and
            os.fsencode(socket) in args)


@atexit.register
def _stop_children():
    for daemon in list(_children.values()):
        daemon.stop()
