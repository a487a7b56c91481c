"""The process of a callable step: ``python3 -m trellis.flow._callable
SPEC_FILE`` (or ``--b64 DATA``, the base64 of the same bytes, for a
container that has no file of it), where the file holds the cloudpickled
step spec (see _graph.Step.spec).

Gets each input by name from the daemon at $TRELLIS_SOCKET (fetch=True:
made elsewhere in the cluster is copied here), calls the step's function
with them in order, and puts what it returns under the output names.
Exits 1 with the reason on stderr if the return value does not match the
outputs; an exception in the function exits 1 with its traceback."""

import base64
import sys

import cloudpickle

import trellis


def split_outputs(step, names, value):
    """The values to put under `names`, from what the function returned."""
    if not names:
        return []
    if len(names) == 1:
        return [value]
    if isinstance(value, dict):
        missing = [n for n in names if n not in value]
        if missing:
            raise SystemExit(f"step {step!r} returned a dict without the "
                             f"outputs {missing}")
        return [value[n] for n in names]
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        raise SystemExit(f"step {step!r} must return {len(names)} values "
                         f"for its outputs {names} (a tuple, list or dict), "
                         f"got {type(value).__name__}")
    return list(value)


def main(argv):
    if len(argv) == 2 and argv[0] == "--b64":
        spec = cloudpickle.loads(base64.b64decode(argv[1]))
    elif len(argv) == 1:
        with open(argv[0], "rb") as f:
            spec = cloudpickle.load(f)
    else:
        raise SystemExit("usage: python3 -m trellis.flow._callable "
                         "SPEC_FILE | --b64 DATA")
    fn = cloudpickle.loads(spec["fn"])
    values = [trellis.get(name=n, fetch=True) for n in spec["inputs"]]
    result = fn(*values)
    del values
    for name, value in zip(spec["outputs"],
                           split_outputs(spec["name"], spec["outputs"], result)):
        trellis.put(value, name=name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
