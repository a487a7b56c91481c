"""Test hosts for multi-node tests and benchmarks.

``Cluster(n)`` builds n separate hosts on this machine with network
namespaces (``scripts/cluster.sh up``: a bridge in the root namespace, a veth
pair per node, node k at 10.213.X.(10+k), the host side of the bridge at
10.213.X.1), starts a real etcd (Debian's ``etcd``) listening on the bridge
address, and runs commands or trellisd inside node k with ``ip netns exec``,
so traffic between nodes truly crosses a network interface.

Where namespaces cannot be made (not root, no CAP_NET_ADMIN: the script
exits 3) or ``TRELLIS_CLUSTER_LOOPBACK=1`` asks for it, the cluster falls back
to loopback: node k is 127.0.0.(10+k) in the root namespace and etcd listens
on 127.0.0.1. It says so on stdout and as a warning, never silently.

    from cluster_fixture import Cluster, make_cluster  # noqa: F401 (fixture)

    def test_x(make_cluster):
        c = make_cluster(2)
        c.run(1, ["ping", "-c1", c.address(2)])
        d = c.start_daemon(1, ["--size", "64M"])

Only addresses of these namespaces and loopback are ever used.
"""

import ctypes
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import pytest

from trellis import _daemon

from factories import made_then_closed

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "scripts" / "cluster.sh"
EXIT_NO_NETNS = 3  # scripts/cluster.sh: namespaces cannot be made here
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"

_PR_SET_PDEATHSIG = 1
_prefixes = itertools.count()


def _die_with_parent():
    # Between fork and exec: SIGTERM the child if the forking thread exits,
    # so a crashed test leaves no process behind.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _base36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def unique_prefix():
    """A cluster.sh prefix no other live process uses: 't', this pid and a
    counter, in base 36 (at most 10 characters)."""
    return ("t" + _base36(os.getpid()) + "x" + _base36(next(_prefixes)))[:10]


def free_port(host):
    """A TCP port on `host` nothing listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _package_path():
    """PYTHONPATH under which `import trellis` finds the tested package."""
    import trellis
    return os.path.dirname(os.path.dirname(os.path.abspath(trellis.__file__)))


def _stop_process(proc, timeout=10.0):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path, limit=1500):
    try:
        return Path(path).read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


class Etcd:
    """A real single-member etcd on `host` (free client and peer ports), its
    data in `workdir`/etcd-data, its log in `workdir`/etcd.log. kill() and
    restart() keep the ports and the data dir (the crash-and-return case)."""

    def __init__(self, host, workdir, start_timeout=20.0):
        self.host = host
        self.data_dir = os.path.join(workdir, "etcd-data")
        self.log = os.path.join(workdir, "etcd.log")
        self.client_port = free_port(host)
        self.peer_port = free_port("127.0.0.1")
        self.endpoint = f"http://{host}:{self.client_port}"
        self.start_timeout = start_timeout
        self._proc = None
        self.start()

    def start(self):
        """Runs etcd and returns once it serves a linearizable read; raises
        RuntimeError (with its log) if it exits or times out."""
        assert self._proc is None or self._proc.poll() is not None
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [ETCD, "--name", "default", "--data-dir", self.data_dir,
               "--listen-client-urls", self.endpoint,
               "--advertise-client-urls", self.endpoint,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"default={peer}",
               "--initial-cluster-token", f"trellis-{os.getpid()}",
               "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log,
                                          preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self.start_timeout
        while not self.healthy():
            if self._proc.poll() is not None:
                raise RuntimeError(f"etcd exited at start ({self.endpoint}):\n"
                                   + _tail(self.log))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not serve {self.endpoint} within "
                                   f"{self.start_timeout} s:\n" + _tail(self.log))
            time.sleep(0.05)

    def healthy(self):
        r = subprocess.run([ETCDCTL, "--endpoints", self.endpoint,
                            "--command-timeout=1s", "get", "health-probe"],
                           capture_output=True, timeout=10)
        return r.returncode == 0

    @property
    def pid(self):
        return self._proc.pid if self._proc else None

    def running(self):
        return self._proc is not None and self._proc.poll() is None

    def kill(self):
        """SIGKILL (no clean shutdown); stays down until restart()."""
        self._proc.kill()
        self._proc.wait()

    def restart(self):
        self.start()

    def stop(self):
        if self._proc is not None:
            _stop_process(self._proc)


class Node:
    """Host k of a cluster: its `address`, and `netns` (None on loopback)."""

    def __init__(self, index, address, netns):
        self.index = index
        self.address = address
        self.netns = netns

    def wrap(self, argv):
        """argv run inside this node's network namespace."""
        argv = [os.fspath(a) for a in argv]
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def __repr__(self):
        where = f"netns {self.netns}" if self.netns else "loopback"
        return f"<Node {self.index} {self.address} {where}>"


class NodeDaemon:
    """A trellisd started in a node by Cluster.start_daemon."""

    def __init__(self, node, socket_path, process, log):
        self.node = node
        self.socket = socket_path
        self.process = process
        self.log = log

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        _stop_process(self.process)


class Cluster:
    """n test hosts and (with `etcd`) one etcd server; see the module doc.

    Attributes: ``mode`` ("netns" or "loopback"), ``nodes`` (list of Node,
    node k at index k-1), ``host_address`` (the bridge address, or
    127.0.0.1), ``etcd`` (Etcd or None), ``dir`` (a temp dir for sockets and
    logs), ``prefix``. Use as a context manager or call close().
    """

    def __init__(self, n, prefix=None, etcd=True, log=print):
        if n < 1:
            raise ValueError("a cluster has at least one node")
        self.prefix = prefix or unique_prefix()
        self.dir = tempfile.mkdtemp(prefix=f"trellis-cl-{self.prefix}-", dir="/tmp")
        self.etcd = None
        self.nodes = []
        self._processes = []
        self._netns_up = False
        self._log = log
        try:
            self._bring_up(n)
            if etcd:
                self.etcd = Etcd(self.host_address, self.dir)
        except BaseException:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------

    def _script(self, *args, check=True):
        env = dict(os.environ, TRELLIS_CLUSTER_PREFIX=self.prefix)
        r = subprocess.run(["bash", str(CLUSTER_SH), *args], env=env,
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed "
                               f"({r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    def _bring_up(self, n):
        forced = os.environ.get("TRELLIS_CLUSTER_LOOPBACK") == "1"
        reason = "TRELLIS_CLUSTER_LOOPBACK=1" if forced else None
        if not forced:
            self._script("down")  # leftovers of a crashed run with this prefix
            r = self._script("up", str(n), check=False)
            if r.returncode == 0:
                self._netns_up = True
                state = dict(line.split("=", 1)
                             for line in self._script("env").stdout.split())
                self.mode = "netns"
                self.host_address = state["HOST_ADDR"]
                subnet = state["SUBNET"]
                self.nodes = [Node(k, f"10.213.{subnet}.{10 + k}",
                                   f"{self.prefix}-n{k}") for k in range(1, n + 1)]
                self._log(f"cluster: {n} node(s) in network namespaces "
                          f"{self.prefix}-n1..{n}, subnet 10.213.{subnet}.0/24, "
                          f"host side {self.host_address}")
                return
            if r.returncode != EXIT_NO_NETNS:
                raise RuntimeError(f"cluster.sh up {n} failed ({r.returncode}):\n"
                                   f"{r.stdout}{r.stderr}")
            reason = r.stderr.strip() or "cluster.sh exited 3"
        self.mode = "loopback"
        self.host_address = "127.0.0.1"
        self.nodes = [Node(k, f"127.0.0.{10 + k}", None) for k in range(1, n + 1)]
        message = (f"cluster: no network namespaces ({reason}); "
                   f"falling back to {n} node(s) on loopback "
                   f"127.0.0.11..{10 + n}, traffic does not cross a network "
                   f"interface")
        self._log(message)
        warnings.warn(message, stacklevel=3)

    # -- using nodes -----------------------------------------------------------

    def node(self, k):
        """Node k (1-based)."""
        return self.nodes[k - 1]

    def address(self, k):
        return self.node(k).address

    def run(self, k, argv, timeout=60, check=True, **kwargs):
        """Runs argv inside node k to completion (subprocess.run; text
        output captured unless told otherwise). Raises on a non-zero exit
        with `check`."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        r = subprocess.run(self.node(k).wrap(argv), timeout=timeout, **kwargs)
        if check and r.returncode != 0:
            raise RuntimeError(f"node {k}: {' '.join(map(str, argv))} exited "
                               f"{r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def popen(self, k, argv, **kwargs):
        """Starts argv inside node k (subprocess.Popen); it is stopped by
        close() if still running, and gets SIGTERM if this thread exits."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.node(k).wrap(argv),
                                preexec_fn=_die_with_parent, **kwargs)
        self._processes.append(proc)
        return proc

    def start_daemon(self, k, extra_args=(), size="64M", name=None,
                     timeout=30.0, log_level="warn"):
        """Runs build/bin/trellisd inside node k on the socket
        <dir>/<name or nK>.sock (unique per node; UNIX sockets live in the
        file system, which the namespaces share) and returns a NodeDaemon
        once the socket accepts connections. Raises RuntimeError with its log
        if it exits or does not serve within `timeout` seconds."""
        name = name or f"n{k}"
        sock = os.path.join(self.dir, name + ".sock")
        log = os.path.join(self.dir, name + ".log")
        cmd = [_daemon.find_trellisd(), "--socket", sock, "--log-level", log_level]
        if size is not None:
            cmd += ["--size", size]
        cmd += list(extra_args)
        with open(log, "ab") as f:
            proc = self.popen(k, cmd, stdout=f, stderr=f)
        deadline = time.monotonic() + timeout
        while not _daemon.serving(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop_process(proc)
                raise RuntimeError(f"trellisd in node {k} did not serve {sock}:\n"
                                   + _tail(log))
            time.sleep(0.01)
        return NodeDaemon(self.node(k), sock, proc, log)

    def start_dask(self, daemons, timeout=60.0):
        """A real dask.distributed cluster over these hosts: the scheduler in
        the root namespace on the host address, and one worker per entry of
        `daemons` ({k: NodeDaemon}) inside node k, with TRELLIS_SOCKET set
        to that node's daemon (one thread: a node runs one step at a time).
        Returns the scheduler address once every worker has joined; all are
        stopped by close()."""
        scheduler_file = os.path.join(self.dir, "dask-scheduler.json")
        env = dict(os.environ, PYTHONPATH=_package_path())
        with open(os.path.join(self.dir, "dask-scheduler.log"), "ab") as log:
            sched = subprocess.Popen(
                ["/usr/bin/python3", "-m", "distributed.cli.dask_scheduler",
                 "--host", self.host_address, "--port", "0", "--no-dashboard",
                 "--scheduler-file", scheduler_file],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=_die_with_parent)
        self._processes.append(sched)
        deadline = time.monotonic() + timeout
        while not os.path.exists(scheduler_file):
            if sched.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dask scheduler did not start:\n" +
                                   _tail(log.name))
            time.sleep(0.05)
        for k, d in sorted(daemons.items()):
            with open(os.path.join(self.dir, f"dask-worker-n{k}.log"), "ab") as wlog:
                self.popen(k, ["/usr/bin/env", f"TRELLIS_SOCKET={d.socket}",
                               f"PYTHONPATH={_package_path()}",
                               "/usr/bin/python3", "-m", "distributed.cli.dask_worker",
                               "--scheduler-file", scheduler_file, "--nthreads", "1",
                               "--no-nanny", "--no-dashboard", "--name", f"node-{k}",
                               "--host", self.address(k)],
                           stdout=wlog, stderr=wlog)
        with open(scheduler_file) as f:
            address = json.load(f)["address"]
        import distributed
        with distributed.Client(address, timeout=timeout) as client:
            client.wait_for_workers(len(daemons), timeout=timeout)
        return address

    def throttle(self, k, rate):
        """Limits what node k sends to `rate` (tc's notation, e.g. "200mbit")
        with a token bucket on its interface, so a transfer from it takes
        long enough to interrupt. Network namespaces only (RuntimeError on
        loopback, where it would slow down every process)."""
        if self.mode != "netns":
            raise RuntimeError("throttle needs network namespaces")
        self.run(k, ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
                     "rate", rate, "burst", "256kb", "latency", "100ms"])

    def etcdctl(self, k, *args, check=True):
        """Runs etcdctl inside node k against the cluster's etcd; returns
        its stdout."""
        assert self.etcd is not None, "cluster made without etcd"
        return self.run(k, [ETCDCTL, "--endpoints", self.etcd.endpoint,
                            "--command-timeout=5s", *args], check=check).stdout

    def iperf(self, server=2, client=1, seconds=2, port=None):
        """TCP throughput from node `client` to node `server` in Gbit/s:
        iperf3 -s in the server node, iperf3 -c from the client node for
        `seconds`, read from --json (the receiver's figure)."""
        # A fresh namespace has every port free; on loopback ask the kernel.
        port = port or (5201 if self.mode == "netns"
                        else free_port(self.address(server)))
        srv = self.popen(server, ["iperf3", "-s", "-B", self.address(server),
                                  "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while not self.run(server, ["ss", "-Hltn", f"sport = :{port}"]).stdout:
                if srv.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("iperf3 -s did not listen: "
                                       + srv.stderr.read().decode(errors="replace"))
                time.sleep(0.02)
            r = self.run(client, ["iperf3", "-c", self.address(server), "-p",
                                  str(port), "-t", str(seconds), "--json"],
                         timeout=seconds + 30, check=False)
            try:
                result = json.loads(r.stdout)
                return result["end"]["sum_received"]["bits_per_second"] / 1e9
            except (ValueError, KeyError):
                raise RuntimeError(f"iperf3 -c failed ({r.returncode}): "
                                   f"{r.stdout[-800:]}{r.stderr}") from None
        finally:
            _stop_process(srv)

    # -- teardown ----------------------------------------------------------------

    def close(self):
        """Stops every process it started, etcd, removes the namespaces
        (cluster.sh down) and the temp dir. Idempotent."""
        for proc in self._processes:
            _stop_process(proc)
        self._processes = []
        if self.etcd is not None:
            self.etcd.stop()
            self.etcd = None
        if self._netns_up:
            self._script("down")
            self._netns_up = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def make_cluster():
    """make_cluster(n, **Cluster options) -> Cluster; all closed at the end
    of the test."""
    yield from made_then_closed(Cluster, lambda c: c.close())
