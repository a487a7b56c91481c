"""What get returns reads shared memory in place."""

import numpy as np
import pandas as pd

import trellis
from conftest import run_python


def test_array_is_a_read_only_view_of_the_arena(client):
    got = client.get(client.put(np.arange(1000.0)))
    assert got.ctypes.data in client.arena
    assert got.ctypes.data + got.nbytes - 1 in client.arena
    assert not got.flags.writeable
    try:
        got[0] = 1
        raise AssertionError("a gotten array must not be writable")
    except ValueError:
        pass
    try:
        got.flags.writeable = True
        raise AssertionError("a gotten array must not become writable")
    except ValueError:
        pass


def test_dataframe_numeric_block_is_one_view(client):
    """46 int64 columns (the seed pipelines' shape) come back as one 2-d
    block over shared memory, not 46 copies."""
    frame = pd.DataFrame({f"c{i}": np.arange(10000, dtype=np.int64) + i for i in range(46)})
    got = client.get(client.put(frame))
    blocks = got._mgr.blocks
    assert len(blocks) == 1
    block = blocks[0].values
    assert block.shape == (46, 10000) and block.ctypes.data in client.arena
    for name in ("c0", "c17", "c45"):
        column = got[name].values
        assert column.ctypes.data in client.arena and not column.flags.writeable
        assert np.shares_memory(column, block)


def test_index_and_series_are_views(client):
    series = pd.Series(np.arange(100.0), index=np.arange(100) * 2)
    got = client.get(client.put(series))
    assert got.values.ctypes.data in client.arena
    assert got.index.values.ctypes.data in client.arena


def test_dict_members_stay_zero_copy(client):
    got = client.get(client.put({"a": np.arange(10), "b": [np.ones(5)]}))
    assert got["a"].ctypes.data in client.arena
    assert got["b"][0].ctypes.data in client.arena


def test_blob_writer_writes_in_place(client):
    writer = client.create_blob(1000)
    assert writer.address in client.arena
    memoryview(writer)[:] = bytes(range(200)) * 5
    blob = writer.seal()
    assert len(memoryview(writer)) == 0  # no writing after seal
    again = client.get_blob(blob.id)
    assert bytes(memoryview(again)) == bytes(range(200)) * 5
    assert again.address == blob.address
    assert memoryview(again).readonly


def _rss_kib():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]), int(fields["RssShmem"].split()[0])


def test_get_of_1gib_does_not_grow_rss(start_daemon):
    """Mapping the object costs no resident memory; only pages one reads do.
    The array is put by another process so this one never touched it."""
    daemon = start_daemon(size="1280M")
    run_python(f"""
import numpy as np, trellis
with trellis.connect({daemon.socket!r}, start=False) as c:
    c.put(np.full(1 << 27, 7, dtype=np.int64), name="big")
""")
    with trellis.connect(daemon.socket, start=False) as client:
        rss_before, shmem_before = _rss_kib()
        big = client.get(name="big")
        rss_after, shmem_after = _rss_kib()
        assert big.nbytes == 1 << 30 and big.ctypes.data in client.arena
        # Well under the 1 GiB (1048576 KiB) a copy would cost.
        assert rss_after - rss_before < 64 * 1024
        assert shmem_after - shmem_before < 64 * 1024
        # Reading a few values (128, 8 MiB apart) faults in only their
        # pages: 4 KiB or, in a huge-page arena, 2 MiB each.
        assert (big[:: 1 << 20] == 7).all()
        page_kib = 2048 if client.status()["huge_pages"] else 4
        assert _rss_kib()[1] - shmem_before < 128 * page_kib + 64 * 1024
