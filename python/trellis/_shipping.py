"""What the flow steps and the stream workers share about running Python
work in other processes (maybe on other machines): shipping a callable,
making the package importable there, reading the end of a log, and
deleting objects that may already be gone."""

import functools
import os
import sys
import sysconfig

import cloudpickle

import trellis


def pickle_callable(fn):
    """cloudpickle bytes of `fn` that a process on any node can load.
    Everything from the user's own modules (not installed ones: `fn` and
    whatever of theirs it refers to) is pickled by value, since that
    process cannot import the driver's scripts or test files; installed
    packages (the standard library, dist-packages, trellis) by reference."""
    own = [m for m in list(sys.modules.values()) if _is_users_module(m)]
    for module in own:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(fn)
    finally:
        for module in own:
            cloudpickle.unregister_pickle_by_value(module)


def _is_users_module(module):
    """A module loaded from a file outside the installed packages (and not
    trellis or __main__, which cloudpickle handles by itself)."""
    name = getattr(module, "__name__", "") or ""
    path = getattr(module, "__file__", None) or ""
    if not path or name == "__main__" or name.split(".")[0] == "trellis":
        return False
    return not any(path.startswith(p) for p in _installed_prefixes())


@functools.lru_cache(maxsize=1)
def _installed_prefixes():
    paths = sysconfig.get_paths()
    return tuple({paths["stdlib"], paths["purelib"], paths["platlib"],
                  "/usr/lib/python3/dist-packages"})


def pythonpath(existing=None):
    """A PYTHONPATH under which `import trellis` finds this package, ahead
    of `existing` (default: ours)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(trellis.__file__)))
    rest = os.environ.get("PYTHONPATH") if existing is None else existing
    return os.pathsep.join(p for p in (root, rest) if p)


def file_tail(path, limit):
    """The last `limit` bytes of the file at `path` as text ("" if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def delete_quietly(client, oid):
    """Deletes `oid` through `client`; one already gone is not an error."""
    try:
        client.delete(oid)
    except trellis.ObjectNotFound:
        pass
