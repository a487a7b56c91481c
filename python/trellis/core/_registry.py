"""What builder and resolver contexts share: a registry of entries by key
over an optional parent, the marker for trellis's own converters, the
current context of a thread (or task) and Vineyard's calling convention.
"""

import contextlib
import contextvars
import inspect

from trellis._core import InvalidArgument


class _Builtin:
    """The entry that means "trellis's own converters"."""

    def __repr__(self):
        return "<trellis builtin converters>"


BUILTIN = _Builtin()


class Registry:
    """Entries by key, optionally over a parent registry to fall back to.

    Subclasses say what a key and an entry are (``_check``) and when the
    registry holds trellis's converters only (``_only_builtins``): put and
    get then skip every lookup."""

    def __init__(self, entries=None, parent=None):
        self._factory = {}
        self._user = 0  # entries that are not BUILTIN
        self._plain = False  # _only_builtins(), kept current
        self._parent = parent
        for key, entry in (entries or {}).items():
            self.register(key, entry)

    def register(self, key, entry):
        self._check(key, entry)
        self.unregister(key)
        self._factory[key] = entry
        self._user += entry is not BUILTIN
        self._plain = self._only_builtins()

    def unregister(self, key):
        entry = self._factory.pop(key, None)
        self._user -= entry is not None and entry is not BUILTIN
        self._plain = self._only_builtins()

    def extend(self, entries=None):
        """A child: `entries` over this registry."""
        return type(self)(entries, parent=self)

    def _check(self, key, entry):
        raise NotImplementedError

    def _only_builtins(self):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({sorted(map(self._key_name, self._factory))})"

    @staticmethod
    def _key_name(key):
        return key


def call_vineyard_style(fn, context_name, context, args, kwargs):
    """``fn(*args, **kwargs)``, passing `context` as the keyword
    `context_name` when fn's signature takes it (or any keyword), as
    Vineyard calls its builders (``builder=``) and resolvers
    (``resolver=``)."""
    try:
        parameters = inspect.signature(fn).parameters
        takes_context = context_name in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    except (TypeError, ValueError):
        takes_context = False
    if takes_context:
        return fn(*args, **{context_name: context}, **kwargs)
    return fn(*args, **kwargs)


class Scope:
    """The default registry and the one in use now (innermost block)."""

    def __init__(self, default, name):
        self.default = default
        self._current = contextvars.ContextVar(name, default=None)

    def current(self):
        return self._current.get() or self.default

    def custom(self):
        """The registry in use, or None when it is the default holding only
        trellis's converters (the fast path of put and get)."""
        context = self._current.get()
        if context is None:
            if self.default._plain:
                return None
            return self.default
        return context

    @contextlib.contextmanager
    def block(self, entries=None, base=None):
        """Within the block, `entries` over `base` (default: the current
        registry) are in use."""
        context = (base or self.current()).extend(entries)
        token = self._current.set(context)
        try:
            yield context
        finally:
            self._current.reset(token)


def check_entry(entry, what):
    if entry is not BUILTIN and not callable(entry):
        raise InvalidArgument(f"a {what}, got {entry!r}")
