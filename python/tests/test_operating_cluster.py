"""The operator's tools on a cluster of two test hosts (network namespaces,
a real etcd): `trellis status` lists the members, `trellis ls` shows what
another member made, and the status page shows the members table."""

import json
import os
import re
import subprocess

import numpy as np

import trellis
from trellis import _config
from cluster_fixture import make_cluster  # noqa: F401 (pytest fixture)
from test_status_page import browse

TRELLIS = os.path.join(_config.BIN_DIR, "trellis")
CLUSTER = "ops"


def cli(*args):
    out = subprocess.run([TRELLIS, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_status_ls_and_page_on_a_cluster(make_cluster, tmp_path):
    c = make_cluster(2)
    port_file = os.path.join(c.dir, "metrics.port")
    one = c.start_daemon(1, ["--etcd", c.etcd.endpoint, "--cluster", CLUSTER,
                             "--metrics", f"{c.address(1)}:0",
                             "--metrics-port-file", port_file])
    two = c.start_daemon(2, ["--etcd", c.etcd.endpoint, "--cluster", CLUSTER])
    with trellis.connect(one.socket, start=False) as a, \
            trellis.connect(two.socket, start=False) as b:
        a.put(np.arange(10), name="here")
        theirs = b.put(np.arange(1000), name="there", persist=True)
        ids = {a.instance_id, b.instance_id}

        status = json.loads(cli("status", "--json", "--socket", one.socket))
        assert {m["instance_id"] for m in status["cluster"]["members"]} == ids
        text = cli("status", "--socket", one.socket)
        assert re.search(rf"^cluster +'{CLUSTER}', 2 members$", text, re.M), text
        assert str(b.instance_id) in text and two.socket in text

        rows = {r["names"][0]: r for r in
                json.loads(cli("ls", "--json", "--socket", one.socket))}
        assert rows["here"]["here"] and rows["here"]["node"] == a.instance_id
        assert not rows["there"]["here"]
        assert rows["there"]["node"] == b.instance_id
        assert rows["there"]["id"] == str(theirs) and rows["there"]["nbytes"] == 8000
        assert "(elsewhere)" in cli("ls", "there", "--socket", one.socket)

    with open(port_file) as f:
        url = f"http://{c.address(1)}:{int(f.read())}/"
    dom = browse(url, "--dump-dom", tmp_path=tmp_path)
    members = re.search(r'<tbody id="members">(.*?)</tbody>', dom, re.S).group(1)
    assert len(re.findall(r"<tr>", members)) == 2
    assert f"'{CLUSTER}'" in dom and "(this one)" in members
