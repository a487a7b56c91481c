"""trellis: look at and manage a running trellisd from the shell.

    trellis status                         the daemon: arena, objects, clients, cluster
    trellis ls [GLOB] [--all]              objects with their names, sizes, ages, holds
    trellis names [GLOB]                   bound names and their objects
    trellis stat ID|NAME                   an object's metadata tree
    trellis get ID|NAME [-o FILE]          a tensor as .npy, a frame as .csv, bytes raw
    trellis put FILE [--name NAME]         a .csv as a DataFrame, a .npy as a tensor
    trellis rm ID|NAME...                  delete objects (their names go with them)
    trellis pin|unpin|evict ID|NAME...     keep in memory / allow spilling / spill now
    trellis trim                           give free arena pages back to the kernel
    trellis start [--size 4G] [...]        a detached daemon on --socket
    trellis stop                           stop the daemon trellis started on --socket
    trellis completion                     a bash completion script

Every command takes --socket PATH (default $TRELLIS_SOCKET, else the
default socket) or --rpc HOST:PORT (a daemon's RPC server), and --json for
scripts. An argument that is an object id ("o" and 16 hex digits) is an id,
anything else a name. GLOBs are shell patterns matched against names, ids
and type names.

Exit status: 0 done; 1 the daemon or a file said no (nothing found, no
daemon, bad glob, unreadable file, ...), with one line on stderr saying
what; 2 a bad command line. A command that fails changes nothing.

In Python rather than C++: get and put read and write .npy and .csv, which
numpy and pandas do, and every other command is one call of the SDK.
"""

import argparse
import fnmatch
import io
import json
import os
import re
import sys
import time

import trellis
from trellis import _daemon
from trellis._core import ObjectID


class CliError(Exception):
    """A one-line error for stderr; exit status 1."""


def _message(error):
    """The text of a trellis error (KeyError subclasses quote their repr)."""
    return str(error.args[0]) if error.args else str(error)


# ------------------------------------------------------------ formatting

def human_size(n):
    """1536 -> '1.5 KiB'."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_age(seconds):
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def table(rows, headers, right=()):
    """Rows of strings as aligned columns; columns in `right` right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        out = [c.rjust(w) if i in right else c.ljust(w)
               for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()
    return "\n".join([line(headers)] + [line(r) for r in rows])


def _ids_as_text(value):
    """A metadata tree with every "id" as its "o…" text."""
    if isinstance(value, dict):
        return {k: (str(ObjectID(v)) if k == "id" and isinstance(v, int) else _ids_as_text(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_ids_as_text(v) for v in value]
    return value


# ------------------------------------------------------------- arguments

_ID = re.compile(r"o[0-9a-f]{16}")


def _check_glob(pattern):
    """Raises CliError for what a shell would not take as a pattern (Python's
    fnmatch quietly reads these literally or as matching nothing): an empty
    one, a "[" never closed, an empty or reversed range."""
    if not pattern:
        raise CliError("invalid glob '': an empty pattern matches nothing")
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise CliError(f"invalid glob {pattern!r}: '[' at {i} is never closed")
            body = pattern[i + 1:end].lstrip("!")
            for a, b in re.findall(r"(.)-(.)", body):
                if a > b:
                    raise CliError(f"invalid glob {pattern!r}: range {a}-{b} is reversed")
            i = end
        i += 1


def glob_matcher(pattern):
    """A predicate for shell glob `pattern`; CliError if it is not one."""
    _check_glob(pattern)
    regex = re.compile(fnmatch.translate(pattern))
    return lambda text: regex.match(text) is not None


def resolve(client, key):
    """The ObjectID `key` names: an id itself, else the object bound to the
    name `key`."""
    if _ID.fullmatch(key):
        return ObjectID(key)
    return client.get_name(key)


def resolve_all(client, keys):
    """Every key resolved before anything is done with any of them."""
    return [resolve(client, k) for k in keys]


# ---------------------------------------------------------------- commands

def cmd_status(client, args, out):
    status = client.status()
    cluster = client.cluster_info()
    if args.json:
        return _emit_json(out, {"socket": client.socket, "status": status, "cluster": cluster})
    arena = status["arena_size"]
    used = status["used"]
    lines = [
        ("daemon", f"{client.socket or args.rpc}  instance {status['instance_id']}, "
                   + ("local metadata (a cluster of one)" if status["backend"] == "local"
                      else f"cluster '{status['cluster']}' ({status['backend']})")),
        ("arena", f"{human_size(arena)}, used {human_size(used)} "
                  f"({100 * used / max(arena, 1):.1f}%), free {human_size(status['free'])}"
                  + (", reserved" if status.get("reserved") else "")
                  + (", 2 MiB pages" if status.get("huge_pages") else "")),
        ("held", f"{human_size(status['held_bytes'])} by readers, pinned "
                 f"{human_size(status['pinned_bytes'])}"),
        ("spilled", (f"{human_size(status['spilled_bytes'])} in {status['spilled_blobs']} "
                     f"blobs to {status['spill_dir']}") if status.get("spill_enabled")
                    else "off (no --spill-dir)"),
        ("objects", f"{status['objects']} objects, {status['blobs']} blobs, "
                    f"{status['unsealed_blobs']} being written, "
                    f"{status['deleted_pending']} deleted but still held"),
        ("clients", f"{status['clients']} (this one included)"),
    ]
    members = cluster.get("members", [])
    if status["backend"] != "local":
        lines.append(("cluster", f"'{cluster['cluster']}', {len(members)} members"))
    width = max(len(k) for k, _ in lines)
    out.write("\n".join(f"{k.ljust(width)}  {v}" for k, v in lines) + "\n")
    if status["backend"] != "local":
        rows = [[str(m["instance_id"]) + (" *" if m["instance_id"] == status["instance_id"] else ""),
                 m["hostname"], m["ipc_socket"], m["rpc_endpoint"] or "-",
                 human_size(m["arena_size"]), human_size(m["arena_used"])] for m in members]
        out.write("\n" + table(rows, ["INSTANCE", "HOST", "SOCKET", "RPC", "ARENA", "USED"],
                               right=(4, 5)) + "\n")
    return 0


def _listing(client, pattern, everything):
    """Rows (dicts) for ls: this daemon's objects, and names bound to
    objects that live elsewhere (global objects, other members')."""
    matches = glob_matcher(pattern) if pattern is not None else None
    names = client.list_names()
    by_id = {}
    for name, oid in names.items():
        by_id.setdefault(int(oid), []).append(name)
    now_ms = time.time() * 1000
    rows = []
    seen = set()
    for meta in client.list_objects():
        tree = meta.to_dict()
        oid = tree["id"]
        seen.add(oid)
        if not everything and tree.get("referrers", 0) > 0 and oid not in by_id:
            continue  # a member of another object
        rows.append({"id": str(ObjectID(oid)), "names": sorted(by_id.get(oid, [])),
                     "typename": tree["typename"], "nbytes": tree["nbytes"],
                     "node": tree["instance_id"], "here": True,
                     "age_s": max(0.0, (now_ms - tree.get("created_ms", now_ms)) / 1000),
                     "readers": tree.get("readers", 0),
                     "pinned_bytes": tree.get("pinned_bytes", 0),
                     "spilled_bytes": tree.get("spilled_bytes", 0)})
    elsewhere = [oid for oid in by_id if oid not in seen]
    if elsewhere:
        try:
            located = client.locate([ObjectID(o) for o in elsewhere])
        except trellis.TrellisError:  # e.g. a member that is gone
            located = [{} for _ in elsewhere]
        for oid, where in zip(elsewhere, located):
            rows.append({"id": str(ObjectID(oid)), "names": sorted(by_id[oid]),
                         "typename": where.get("typename", "?"), "nbytes": where.get("nbytes", 0),
                         "node": where.get("instance_id"), "here": False, "age_s": None,
                         "readers": None, "pinned_bytes": None, "spilled_bytes": None,
                         "global": bool(where.get("global"))})
    if matches:
        rows = [r for r in rows if matches(r["id"]) or matches(r["typename"])
                or any(matches(n) for n in r["names"])]
    rows.sort(key=lambda r: (r["names"][:1] or ["\uffff"], r["id"]))
    return rows


def cmd_ls(client, args, out):
    rows = _listing(client, args.glob, args.all)
    if args.json:
        return _emit_json(out, rows)
    dash = "-"
    cells = [[r["id"], ",".join(r["names"]) or dash, r["typename"], human_size(r["nbytes"]),
              str(r["node"]) + ("" if r["here"] else " (elsewhere)"),
              human_age(r["age_s"]) if r["age_s"] is not None else dash,
              str(r["readers"]) if r["readers"] is not None else dash,
              human_size(r["pinned_bytes"]) if r["pinned_bytes"] else dash,
              human_size(r["spilled_bytes"]) if r["spilled_bytes"] else dash] for r in rows]
    out.write(table(cells, ["ID", "NAMES", "TYPE", "SIZE", "NODE", "AGE", "READERS",
                            "PINNED", "SPILLED"], right=(3, 5, 6, 7, 8)) + "\n")
    return 0


def cmd_names(client, args, out):
    matches = glob_matcher(args.glob) if args.glob is not None else (lambda _: True)
    names = {n: str(i) for n, i in sorted(client.list_names().items()) if matches(n)}
    if args.json:
        return _emit_json(out, names)
    out.write(table([[n, i] for n, i in names.items()], ["NAME", "ID"]) + "\n")
    return 0


def cmd_stat(client, args, out):
    meta = client.get_meta(resolve(client, args.object), fetch=args.fetch)
    tree = _ids_as_text(meta.to_dict())
    out.write(json.dumps(tree, indent=None if args.json else 2, default=str) + "\n")
    return 0


def _write_value(value, path, out):
    """Writes what `get` fetched: .npy, .csv, raw bytes, text or JSON."""
    import numpy as np

    if isinstance(value, trellis.GlobalObject):
        raise CliError("a global object: read its chunks with the Python API "
                       "(trellis.get(...).gather())")
    if isinstance(value, trellis.ObjectMeta):
        raise CliError(f"a {value.typename} has no file form; `trellis stat` shows it")
    buffer = io.BytesIO()
    if isinstance(value, np.ndarray):
        np.save(buffer, np.asarray(value), allow_pickle=False)
    elif type(value).__module__.startswith("pandas") and hasattr(value, "to_csv"):
        buffer.write(value.to_csv().encode())
    elif isinstance(value, (bytes, bytearray, memoryview)):
        buffer.write(bytes(value))
    elif isinstance(value, str):
        buffer.write(value.encode())
    else:
        try:
            buffer.write((json.dumps(value) + "\n").encode())
        except (TypeError, ValueError):
            raise CliError(f"a {type(value).__name__} has no file form (tensors, frames, "
                           "bytes, str and JSON values have); use the Python API") from None
    data = buffer.getvalue()
    if path in (None, "-"):
        out.buffer.write(data) if hasattr(out, "buffer") else out.write(data.decode())
        out.flush()
    else:
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:
            raise CliError(f"cannot write {path}: {e.strerror}") from None
    return len(data)


def cmd_get(client, args, out):
    value = client.get(resolve(client, args.object), fetch=args.fetch)
    written = _write_value(value, args.output, out)
    if args.output not in (None, "-"):
        if args.json:
            return _emit_json(out, {"file": args.output, "bytes": written})
        sys.stderr.write(f"wrote {human_size(written)} to {args.output}\n")
    return 0


_PUT_KINDS = {".csv": "csv", ".npy": "npy"}


def _read_file(path, kind):
    """The value `put` stores: a DataFrame, an array or the bytes."""
    if kind is None:
        kind = _PUT_KINDS.get(os.path.splitext(path)[1].lower())
        if kind is None:
            raise CliError(f"{path}: not .csv or .npy; say --as csv, npy or bytes")
    try:
        if kind == "bytes":
            with open(path, "rb") as f:
                return f.read()
        if kind == "npy":
            import numpy as np

            return np.load(path, allow_pickle=False)
        import pandas as pd

        return pd.read_csv(path)
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # what numpy and pandas say about a bad file
        raise CliError(f"cannot read {path} as {kind}: {e}") from None


def cmd_put(client, args, out):
    value = _read_file(args.file, args.kind)
    oid = client.put(value, name=args.name, persist=args.persist,
                     overwrite=not args.no_overwrite)
    if args.json:
        return _emit_json(out, {"id": str(oid), "name": args.name})
    out.write(f"{oid}" + (f"  {args.name}" if args.name else "") + "\n")
    return 0


def cmd_rm(client, args, out):
    ids = resolve_all(client, args.objects)
    deleted = client.delete(ids, deep=True, force=args.force)
    if args.json:
        return _emit_json(out, [str(i) for i in deleted])
    out.write(f"deleted {len(ids)} object(s) ({len(deleted)} with their members)\n")
    return 0


def cmd_pin(client, args, out):
    ids = resolve_all(client, args.objects)
    getattr(client, args.command)(ids)
    if args.json:
        return _emit_json(out, [str(i) for i in ids])
    verb = {"pin": "pinned", "unpin": "unpinned"}[args.command]
    out.write(f"{verb} {len(ids)} object(s)\n")
    return 0


def cmd_evict(client, args, out):
    written = client.evict(resolve_all(client, args.objects))
    if args.json:
        return _emit_json(out, {"spilled_bytes": written})
    out.write(f"spilled {human_size(written)}\n")
    return 0


def cmd_trim(client, args, out):
    released = client.memory_trim()
    if args.json:
        return _emit_json(out, {"released_bytes": released})
    out.write(f"gave {human_size(released)} back to the kernel\n")
    return 0


def cmd_start(args, out):
    socket = args.socket or _daemon.default_socket()
    try:
        daemon = trellis.start_daemon(socket, size=args.size, detach=True,
                                      spill_dir=args.spill_dir, metrics=args.metrics)
    except trellis.ObjectExists:
        raise CliError(f"a trellisd already serves {socket}") from None
    if args.json:
        return _emit_json(out, {"socket": socket, "pid": daemon.pid, "log": daemon.log,
                                "metrics_url": daemon.metrics_url})
    out.write(f"trellisd {daemon.pid} serves {socket} (log {daemon.log})"
              + (f", status page {daemon.metrics_url}" if daemon.metrics_url else "") + "\n")
    return 0


def cmd_stop(args, out):
    socket = args.socket or _daemon.default_socket()
    if not _daemon.serving(socket):
        raise CliError(f"no trellisd serves {socket}")
    if not trellis.stop_daemon(socket):
        raise CliError(f"the trellisd serving {socket} was not started by trellis "
                       "(no pid file); stop it where it was started")
    if args.json:
        return _emit_json(out, {"socket": socket, "stopped": True})
    out.write(f"stopped the trellisd serving {socket}\n")
    return 0


_COMMANDS = ["status", "ls", "names", "stat", "get", "put", "rm", "pin", "unpin", "evict",
             "trim", "start", "stop", "completion"]

_COMPLETION = """# bash completion for trellis: eval "$(trellis completion)"
_trellis() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%(commands)s" -- "$cur"))
  elif [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "--socket --rpc --json --help" -- "$cur"))
  else
    case "$cmd" in
      stat|get|rm|pin|unpin|evict)
        COMPREPLY=($(compgen -W "$(trellis names --json 2>/dev/null | %(python)s -c 'import json,sys; print(" ".join(json.load(sys.stdin)))')" -- "$cur")) ;;
      put) COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
  fi
}
complete -F _trellis trellis
"""


def cmd_completion(args, out):
    out.write(_COMPLETION % {"commands": " ".join(_COMMANDS), "python": sys.executable})
    return 0


def _emit_json(out, value):
    out.write(json.dumps(value, default=str) + "\n")
    return 0


# -------------------------------------------------------------------- main

def _add_common(parser, default):
    """--socket, --rpc, --rpc-token, --json: before or after the command.
    The command's own copies default to SUPPRESS, so they do not undo what
    was given before the command."""
    parser.add_argument("--socket", default=default,
                        help="UNIX socket of the daemon (default $TRELLIS_SOCKET, else the "
                        "default socket)")
    parser.add_argument("--rpc", metavar="HOST:PORT", default=default,
                        help="a daemon's RPC server instead")
    parser.add_argument("--rpc-token", metavar="FILE", default=default,
                        help="file holding the daemon's RPC token (with --rpc)")
    parser.add_argument("--json", action="store_true",
                        default=False if default is None else default,
                        help="machine-readable output")


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="trellis", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:4]))
    _add_common(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text):
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    command("status", "the daemon's arena, objects, clients and cluster")
    p = command("ls", "objects with their names, sizes, ages and holds")
    p.add_argument("glob", nargs="?", help="shell pattern over names, ids and type names")
    p.add_argument("--all", action="store_true",
                   help="also objects that are members of others (blobs, columns)")
    p = command("names", "bound names and the objects they name")
    p.add_argument("glob", nargs="?")
    p = command("stat", "an object's metadata tree (JSON)")
    p.add_argument("object", metavar="ID|NAME")
    p.add_argument("--fetch", action="store_true", help="copy it here if another member made it")
    p = command("get", "an object's value: a tensor as .npy, a frame as .csv, bytes raw")
    p.add_argument("object", metavar="ID|NAME")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--fetch", action="store_true", help="copy it here if another member made it")
    p = command("put", "store a file: .csv as a DataFrame, .npy as a tensor")
    p.add_argument("file")
    p.add_argument("--name")
    p.add_argument("--as", dest="kind", choices=["csv", "npy", "bytes"],
                   help="how to read the file (default: by its extension)")
    p.add_argument("--persist", action="store_true", help="publish it to the cluster")
    p.add_argument("--no-overwrite", action="store_true",
                   help="fail if the name is bound already")
    p = command("rm", "delete objects; names bound to them go too")
    p.add_argument("objects", nargs="+", metavar="ID|NAME")
    p.add_argument("--force", action="store_true", help="also members of other objects")
    for name, text in [("pin", "keep objects' bytes in memory (never spilled)"),
                       ("unpin", "let pinned objects be spilled again"),
                       ("evict", "spill objects' bytes to the spill directory now")]:
        p = command(name, text)
        p.add_argument("objects", nargs="+", metavar="ID|NAME")
    command("trim", "give the arena's free pages back to the kernel")
    p = command("start", "start a detached daemon on --socket")
    p.add_argument("--size", help="arena size, e.g. 512M or 4G")
    p.add_argument("--spill-dir", help="spill cold objects here when memory runs short")
    p.add_argument("--metrics", metavar="[HOST:]PORT",
                   help="serve Prometheus metrics and the status page here")
    command("stop", "stop the daemon trellis started on --socket")
    command("completion", "print a bash completion script")
    return parser


_NEEDS_NO_CLIENT = {"start": cmd_start, "stop": cmd_stop, "completion": cmd_completion}
_WITH_CLIENT = {"status": cmd_status, "ls": cmd_ls, "names": cmd_names, "stat": cmd_stat,
                "get": cmd_get, "put": cmd_put, "rm": cmd_rm, "pin": cmd_pin,
                "unpin": cmd_pin, "evict": cmd_evict, "trim": cmd_trim}


def connect(args):
    if args.rpc and args.socket:
        raise CliError("give --socket or --rpc, not both")
    if args.rpc:
        token = None
        if args.rpc_token:
            try:
                with open(args.rpc_token) as f:
                    token = f.read().rstrip("\n")
            except OSError as e:
                raise CliError(f"cannot read {args.rpc_token}: {e.strerror}") from None
        return trellis.connect(args.rpc, token=token)
    socket = args.socket or _daemon.default_socket()
    try:
        return trellis.connect(socket, start=False)
    except trellis.DaemonNotReachable:
        raise CliError(f"no trellisd serves {socket} (start one with `trellis start`)") from None


def main(argv=None, out=None):
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.command in _NEEDS_NO_CLIENT:
            if args.rpc and args.command != "completion":
                raise CliError(f"`trellis {args.command}` works on a local --socket, not --rpc")
            return _NEEDS_NO_CLIENT[args.command](args, out)
        client = connect(args)
        try:
            return _WITH_CLIENT[args.command](client, args, out)
        finally:
            client.close()
    except CliError as e:
        sys.stderr.write(f"trellis: error: {e}\n")
    except trellis.TrellisError as e:
        sys.stderr.write(f"trellis: error: {_message(e)}\n")
    except BrokenPipeError:  # `trellis ls | head`
        sys.stderr.close()
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
