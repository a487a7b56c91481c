"""The arena in transparent huge pages: trellisd asks for them (--huge-pages
auto, the default) and gets them from a memfd where the kernel's shmem THP
policy honours madvise, else from a tmpfs of its own, unless the policy is
deny; a client then maps a fresh object's 2 MiB at once. Each
test sets the policy (root: /sys/kernel/mm/transparent_hugepage) for its
own run and puts back what was there."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import trellis

from conftest import run_python

POLICY = Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled")


@pytest.fixture
def shmem_policy():
    """set(word) makes `word` the kernel's shmem THP policy until the test
    ends. Skips, saying why, where the kernel has none or this is not root."""
    if not POLICY.exists():
        pytest.skip(f"this kernel has no shmem THP policy ({POLICY} is missing)")
    before = re.search(r"\[(\w+)\]", POLICY.read_text()).group(1)

    def set_policy(word):
        try:
            POLICY.write_text(word)
        except PermissionError:
            pytest.skip(f"setting {POLICY} needs root")

    yield set_policy
    POLICY.write_text(before)


# In a process of its own: gets every frame by id, checks each against the
# frame it was made from, and prints the kB of its arena mapping that the
# kernel maps in 2 MiB pages (ShmemPmdMapped in /proc/self/smaps).
CONSUMER = r'''
import sys, numpy as np, pandas as pd, trellis
client = trellis.connect(sys.argv[1], start=False)
for i, oid in enumerate(sys.argv[2:]):
    got = client.get(trellis.ObjectID(int(oid)))
    want = pd.DataFrame({f"c{j}": np.arange(100) * i + j for j in range(10)})
    pd.testing.assert_frame_equal(got, want)
pmd, in_arena = 0, False
for line in open("/proc/self/smaps"):
    if line[0] in "0123456789abcdef":
        in_arena = "trellis-arena" in line
    elif in_arena and line.startswith("ShmemPmdMapped:"):
        pmd += int(line.split()[1])
print(pmd)
'''


def hand_over(daemon, frames=300):
    """Puts `frames` small frames here and reads them in another process;
    returns (the daemon's status, the reader's kB mapped in 2 MiB pages)."""
    with trellis.connect(daemon.socket, start=False) as client:
        ids = [client.put(pd.DataFrame({f"c{j}": np.arange(100) * i + j for j in range(10)}))
               for i in range(frames)]
        args = [daemon.socket] + [str(int(i)) for i in ids]
        pmd_kb = int(run_python(f"import sys; sys.argv[1:] = {args!r}\n" + CONSUMER))
        return client.status(), pmd_kb


def test_the_arena_is_in_huge_pages_where_the_kernel_allows(shmem_policy, start_daemon):
    shmem_policy("advise")
    status, reader_pmd_kb = hand_over(start_daemon(size="64M"))
    assert status["huge_pages"] is True
    # 300 frames of 8 KB: at least one 2 MiB stretch read through one mapping.
    assert reader_pmd_kb >= 2048


def test_huge_pages_off_keeps_4k_pages(shmem_policy, start_daemon):
    shmem_policy("advise")
    status, reader_pmd_kb = hand_over(start_daemon(size="64M", huge_pages=False))
    assert status["huge_pages"] is False and reader_pmd_kb == 0


def test_a_kernel_policy_of_never_still_gets_huge_pages_from_a_tmpfs(shmem_policy,
                                                                    start_daemon):
    """never covers memfds only: the daemon mounts a tmpfs of its own with
    huge=within_size, in a mount namespace nobody else sees."""
    shmem_policy("never")
    status, reader_pmd_kb = hand_over(start_daemon(size="64M"))
    assert status["huge_pages"] is True and reader_pmd_kb >= 2048
    assert "trellis-arena" not in Path("/proc/self/mountinfo").read_text()


def test_a_kernel_policy_of_deny_means_4k_pages(shmem_policy, start_daemon):
    shmem_policy("deny")
    status, reader_pmd_kb = hand_over(start_daemon(size="64M"))
    assert status["huge_pages"] is False and reader_pmd_kb == 0


def test_a_reserved_arena_in_huge_pages_is_resident_and_serves(shmem_policy, start_daemon):
    shmem_policy("advise")
    daemon = start_daemon(size="32M", reserve=True)
    status, reader_pmd_kb = hand_over(daemon, frames=50)
    assert status["huge_pages"] and status["reserved"]
    assert status["arena_resident_bytes"] == 32 << 20 and reader_pmd_kb >= 2048
