"""Fixtures: every test that needs a daemon gets its own trellisd on a
unique socket in a fresh directory, stopped when the test ends."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import trellis
from trellis import _daemon

from factories import made_then_closed

# Where `import trellis` came from, for the child processes tests start.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(trellis.__file__)))


@pytest.fixture
def tmp_socket_dir():
    # Short paths: a UNIX socket path must fit in 108 bytes.
    path = tempfile.mkdtemp(prefix="trellis-t-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_daemon(tmp_socket_dir):
    """start_daemon(size="512M", name="d", **launch_options) -> Daemon; all
    stopped at the end."""
    def start(size="512M", name="d", **options):
        return _daemon.launch(os.path.join(tmp_socket_dir, name + ".sock"),
                              size=size, detach=False, **options)

    yield from made_then_closed(start, lambda daemon: daemon.stop())


@pytest.fixture
def daemon(start_daemon):
    return start_daemon()


@pytest.fixture
def client(daemon):
    with trellis.connect(daemon.socket, start=False) as c:
        yield c


def python_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def spawn_python(code, **env):
    """Starts `/usr/bin/python3 -c code` with the tested package importable;
    stdout is a pipe (text)."""
    return subprocess.Popen([sys.executable, "-c", code], env=python_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_python(code, timeout=120, **env):
    """Runs code in a child Python; returns its stdout, fails on error."""
    proc = spawn_python(code, **env)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err}"
    return out
