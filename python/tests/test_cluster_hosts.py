"""The multi-node test hosts (scripts/cluster.sh + cluster_fixture): nodes
are separate network namespaces whose traffic crosses a veth, etcd on the
bridge serves them, and the loopback fallback says so. Measures nothing."""

import os
import shutil
import subprocess
import sys

import pytest

import trellis
from cluster_fixture import CLUSTER_SH, EXIT_NO_NETNS, make_cluster  # noqa: F401

ECHO_SERVER = """
import socket, sys
s = socket.create_server((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
data = b""
while len(data) < int(sys.argv[2]):
    chunk = c.recv(1 << 16)
    if not chunk:
        break
    data += chunk
c.sendall(data[::-1])
c.close()
"""

ECHO_CLIENT = """
import socket, sys
payload = bytes(range(256)) * (int(sys.argv[3]) // 256)
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
c.sendall(payload)
back = b""
while len(back) < len(payload):
    chunk = c.recv(1 << 16)
    if not chunk:
        break
    back += chunk
assert back == payload[::-1], (len(back), len(payload))
print("echoed", len(back))
"""

PAYLOAD = 256 * 1024


def tx_bytes(cluster, k):
    """Bytes sent by node k's eth0 (netns mode only)."""
    out = cluster.run(k, ["cat", "/sys/class/net/eth0/statistics/tx_bytes"]).stdout
    return int(out)


def echo_between(cluster, server, client):
    srv = cluster.popen(server, [sys.executable, "-c", ECHO_SERVER,
                                 cluster.address(server), str(PAYLOAD)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = srv.stdout.readline().strip()
    assert port, srv.stderr.read()
    out = cluster.run(client, [sys.executable, "-c", ECHO_CLIENT,
                               cluster.address(server), port, str(PAYLOAD)]).stdout
    assert out.strip() == f"echoed {PAYLOAD}"
    assert srv.wait(20) == 0


def our_netns(prefix):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.startswith(prefix + "-")]


def our_links(prefix):
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if f": {prefix}-" in line]


def test_tcp_between_nodes_crosses_the_veth(make_cluster):
    c = make_cluster(2, etcd=False)
    assert [n.index for n in c.nodes] == [1, 2]
    assert c.address(1) != c.address(2)
    if c.mode == "netns":
        assert c.address(2).startswith("10.213.")
        # Node 2's address is not local to node 1: the bytes must leave
        # through node 1's eth0 (its veth end) and come back through it.
        assert c.address(2) not in c.run(1, ["ip", "-4", "addr"]).stdout
        before = tx_bytes(c, 1)
        echo_between(c, server=2, client=1)
        assert tx_bytes(c, 1) - before >= PAYLOAD
    else:
        echo_between(c, server=2, client=1)


def test_etcdctl_inside_a_node_reaches_etcd_on_the_bridge(make_cluster):
    c = make_cluster(2)
    if c.mode == "netns":
        assert c.etcd.endpoint.startswith(f"http://{c.host_address}:")
        assert c.host_address.endswith(".1")
    c.etcdctl(1, "put", "cluster/k", "from-node-1")
    assert c.etcdctl(2, "get", "cluster/k", "--print-value-only").strip() == "from-node-1"
    # etcd down: the client in the node fails, it does not hang.
    c.etcd.kill()
    r = c.run(1, ["etcdctl", "--endpoints", c.etcd.endpoint, "--dial-timeout=1s",
                  "--command-timeout=2s", "get", "cluster/k"], check=False)
    assert r.returncode != 0
    c.etcd.restart()  # same ports and data
    assert c.etcdctl(2, "get", "cluster/k", "--print-value-only").strip() == "from-node-1"


def test_start_daemon_runs_one_trellisd_per_node(make_cluster):
    c = make_cluster(2, etcd=False)
    d1 = c.start_daemon(1)
    d2 = c.start_daemon(2)
    assert d1.socket != d2.socket and d1.alive() and d2.alive()
    with trellis.connect(d1.socket, start=False) as a, \
            trellis.connect(d2.socket, start=False) as b:
        a.put("on node 1", name="x")
        assert a.get(name="x") == "on node 1"
        with pytest.raises(trellis.ObjectNotFound):
            b.get_name("x")  # separate daemons, no shared metadata yet
    if c.mode == "netns":
        # The daemon really runs in its node's network namespace.
        ns = os.readlink(f"/proc/{d1.pid}/ns/net")
        assert ns != os.readlink("/proc/self/ns/net")
        assert ns != os.readlink(f"/proc/{d2.pid}/ns/net")
    d1.stop()
    assert not d1.alive() and d2.alive()


def test_iperf_between_two_nodes(make_cluster):
    c = make_cluster(2, etcd=False)
    gbps = c.iperf(server=2, client=1, seconds=1)
    print(f"iperf3 node1 -> node2 ({c.mode}): {gbps:.2f} Gbit/s")
    assert gbps > 0


def test_close_removes_everything(make_cluster):
    c = make_cluster(3)
    c.start_daemon(3)
    prefix, workdir, pid = c.prefix, c.dir, c.etcd.pid
    c.close()
    c.close()  # idempotent
    assert not os.path.exists(workdir)
    assert not os.path.exists(f"/proc/{pid}") or \
        open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert our_netns(prefix) == [] and our_links(prefix) == []


def test_loopback_fallback_says_so(monkeypatch, make_cluster):
    monkeypatch.setenv("TRELLIS_CLUSTER_LOOPBACK", "1")
    lines = []
    with pytest.warns(UserWarning, match="falling back to 2 node"):
        c = make_cluster(2, log=lines.append)
    assert c.mode == "loopback" and "loopback" in lines[0]
    assert [c.address(1), c.address(2)] == ["127.0.0.11", "127.0.0.12"]
    echo_between(c, server=2, client=1)
    c.etcdctl(1, "put", "k", "v")
    assert c.etcdctl(2, "get", "k", "--print-value-only").strip() == "v"


def script(prefix, *args, **env):
    return subprocess.run(["bash", str(CLUSTER_SH), *args], capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, TRELLIS_CLUSTER_PREFIX=prefix, **env))


def netns_available():
    prefix = f"tpr{os.getpid() % 100000}"
    ok = script(prefix, "up", "1").returncode == 0
    script(prefix, "down")
    return ok


def test_script_without_privilege_exits_3_and_makes_nothing():
    prefix = f"tnp{os.getpid() % 100000}"
    cmd = ["bash", str(CLUSTER_SH), "up", "2"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root"
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
               "--inh-caps=-all", "--bounding-set=-all", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, TRELLIS_CLUSTER_PREFIX=prefix))
    assert r.returncode == EXIT_NO_NETNS, r.stdout + r.stderr
    assert "CAP_NET_ADMIN" in r.stderr
    assert our_netns(prefix) == [] and our_links(prefix) == []


def test_script_down_is_idempotent_and_undoes_a_failed_up():
    if not netns_available():
        pytest.skip("network namespaces cannot be made here: the script's "
                    "own behaviour is not testable (the fallback test covers "
                    "the rest)")
    a, b = f"tda{os.getpid() % 100000}", f"tdb{os.getpid() % 100000}"
    try:
        assert script(a, "up", "2").returncode == 0
        subnet = dict(line.split("=", 1) for line in script(a, "env").stdout.split())["SUBNET"]
        status = script(a, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "node1 -> node2" in status.stdout and "FAILED" not in status.stdout
        assert script(a, "up", "2").returncode == 1  # already up
        # A second prefix asking for the same subnet fails after making its
        # first namespace, and undoes it.
        r = script(b, "up", "2", TRELLIS_CLUSTER_SUBNET=subnet)
        assert r.returncode == 1 and "already in use" in r.stderr
        assert our_netns(b) == [] and our_links(b) == []
    finally:
        down = script(a, "down")
        script(b, "down")
    assert down.returncode == 0 and "removed" in down.stdout
    again = script(a, "down")
    assert again.returncode == 0 and "nothing to remove" in again.stdout
    assert our_netns(a) == [] and our_links(a) == []
    assert script(a, "status").returncode == 1  # nothing is up
