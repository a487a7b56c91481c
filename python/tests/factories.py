"""Fixture bodies shared by the test modules."""


def made_then_closed(make, close):
    """The body of a generator fixture: yields a function that calls
    `make(*args, **kwargs)` and returns what it made; when the test ends,
    calls `close(thing)` on everything made, in the order made."""
    made = []

    def tracked(*args, **kwargs):
        thing = make(*args, **kwargs)
        made.append(thing)
        return thing

    yield tracked
    for thing in made:
        close(thing)


def load_example(path, name):
    """The module of the example file `path`, imported under the unique
    `name` (examples have clashing module names, e.g. two generate.py),
    with its directory on sys.path while it imports its siblings."""
    import importlib.util
    import os
    import sys
    if name in sys.modules:
        return sys.modules[name]
    directory = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, directory)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(directory)
    return module
