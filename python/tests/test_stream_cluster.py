"""trellis.stream over two nodes of a cluster (cluster_fixture: network
namespaces and a real etcd; loopback where namespaces cannot be made,
which it says): the coordinator on node 1, workers on both; batches made
on node 1 are fetched by node 2's worker, its results fetched back. The
output is the serial job's, and neither node keeps an object."""

import os
import subprocess

import trellis
from trellis import stream
from cluster_fixture import make_cluster  # noqa: F401 (pytest fixture)
from test_fetch import connect, join

from conftest import python_env
from factories import load_example

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "parallel_pandas")
generate = load_example(os.path.join(EXAMPLE, "generate.py"), "pp_generate")
classify_df = load_example(os.path.join(EXAMPLE, "classifier.py"), "pp_classifier").classify_df


def test_workers_on_two_nodes_give_the_serial_bytes(make_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSIFIER_WORK", "3")
    c = make_cluster(2)
    d1, d2 = join(c, 1), join(c, 2)
    src, serial_out = tmp_path / "in.csv", tmp_path / "serial.csv"
    generate.write(src, 3000)
    subprocess.run(["/usr/bin/python3", os.path.join(EXAMPLE, "old_pipeline.py"),
                    str(src), str(serial_out)], check=True, env=python_env())
    out = tmp_path / "out.csv"
    stats = (stream.from_file(str(src)).batch(rows=100)
             .parallel(classify_df, socket=d1.socket,
                       nodes=[stream.Node(d1.socket, 1),
                              stream.Node(d2.socket, 1, prefix=c.node(2).wrap([]))])
             .sink(stream.to_file(str(out))).run())
    assert out.read_bytes() == serial_out.read_bytes()
    per_node = stats["batches_per_node"]
    assert set(per_node) == {d1.socket, d2.socket}, per_node
    assert sum(per_node.values()) == 30
    with connect(d1) as a, connect(d2) as b:
        assert a.status()["fetch_count"] > 0  # results came back from node 2
        assert b.status()["fetch_count"] > 0  # batches went to node 2
        assert a.status()["objects"] == 0 and b.status()["objects"] == 0
