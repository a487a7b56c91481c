"""How the pipeline's steps hand intermediate data to each other.

An exchange has two operations used by the steps, put(name, value) and
get(name); the pickle exchanges have a third, remove(names), used by the
driver (trellis objects belong to the flow's run, which deletes them).
Three implementations:

- "trellis":     trellis.put(value, name=name, persist=True) and
                 trellis.get(name=name, fetch=True), exactly as the seed code
                 calls vineyard. The daemon is found through TRELLIS_SOCKET.
- "pickle-disk": pickle files (protocol 5) in a directory on local disk.
- "pickle-shm":  the same pickle files in a directory under /dev/shm (tmpfs).

Everything else in a step is identical across exchanges. Steps time their
put/get calls as "write"/"read"; for trellis that includes connecting to the
daemon and mapping its arena on first use, which are real costs of a step.
"""

import argparse
import os
import pickle
import time
from contextlib import contextmanager

from common import EXCHANGES, StepTimer, maybe_profile


def default_exchange_dir(kind):
    """Directory used by a pickle exchange when none is given."""
    uid = os.getuid()
    if kind == "pickle-shm":
        return f"/dev/shm/trellis-housing-{uid}"
    return f"/tmp/trellis-housing-{uid}/exchange"


class PickleExchange:
    """Intermediate objects as `<dir>/<name>.pkl` files.

    put() overwrites an existing file of the same name. The directory is
    created on first put. Files are not fsync'ed: a pipeline writing pickles
    would not do it either, so written data may still sit in the page cache
    when the next step reads it (the driver notes this in its results).
    """

    def __init__(self, directory):
        self.directory = directory

    def _path(self, name):
        return os.path.join(self.directory, name + ".pkl")

    def put(self, name, value):
        os.makedirs(self.directory, exist_ok=True)
        with open(self._path(name), "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)

    def get(self, name):
        with open(self._path(name), "rb") as f:
            return pickle.load(f)

    def remove(self, names):
        """Deletes the files of `names` that exist; returns how many it did."""
        removed = 0
        for name in names:
            try:
                os.unlink(self._path(name))
                removed += 1
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.directory)  # only if now empty
        except OSError:
            pass
        return removed


class TrellisExchange:
    """Intermediate objects as named, persisted trellis objects.

    Constructing one imports the trellis module (a step counts that with its
    other imports); the first put/get connects to the daemon and maps the
    arena, which the step counts as exchange time. The pickle variants never
    load trellis.
    """

    def __init__(self):
        import trellis
        self._trellis = trellis

    def put(self, name, value):
        self._trellis.put(value, name=name, persist=True)

    def get(self, name):
        return self._trellis.get(name=name, fetch=True)


def make_exchange(kind, directory=None):
    """Returns the exchange for `kind` (one of EXCHANGES)."""
    if kind == "trellis":
        return TrellisExchange()
    if kind in ("pickle-disk", "pickle-shm"):
        return PickleExchange(directory or default_exchange_dir(kind))
    raise ValueError(f"unknown exchange {kind!r}; expected one of {EXCHANGES}")


def step_arg_parser(description):
    """Argument parser with the options every step shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--exchange", required=True, choices=EXCHANGES,
                        help="how intermediate data is handed over")
    parser.add_argument("--exchange-dir", default=None,
                        help="directory of the pickle exchanges "
                             "(default: /tmp/... for disk, /dev/shm/... for shm)")
    parser.add_argument("--profile", default=None, metavar="PATH",
                        help="write cProfile stats of the step to PATH")
    return parser


@contextmanager
def run_step(args, t0):
    """What every step does around its work: yields (exchange, timer), the
    exchange chosen by `args` (from step_arg_parser) and a StepTimer started
    at `t0` (time.perf_counter() at the top of the step) that has counted the
    imports since; the body runs under --profile."""
    exchange = make_exchange(args.exchange, args.exchange_dir)
    timer = StepTimer(start=t0)
    timer.add("imports", time.perf_counter() - t0)
    with maybe_profile(args.profile):
        yield exchange, timer
