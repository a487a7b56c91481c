"""Resolvers: how ``get`` turns an object of a given type name back into a
Python value. Vineyard's extension point, under its names.

A resolver is ``fn(obj, **kwargs)`` or ``fn(obj, resolver, **kwargs)``
(`obj` an Object: ``obj.meta`` its ObjectMeta, ``obj.member(name)``;
`resolver` the context, to resolve members with ``resolver(member)``)::

    def resolve_point(obj, **kw):
        return Point(obj.meta["x"], obj.meta["y"])

    default_resolver_context.register("my::Point", resolve_point)

A type name matches a registration equal to it, else the first one (in
sorted order) it starts with, as in Vineyard (``my::Vec<int>`` matches
``my::Vec``). trellis's own converters
are registered by ``register_builtin_types``; an object no resolver takes
comes back as its ObjectMeta.
"""

import contextlib
import contextvars
import inspect

from trellis._core import InvalidArgument

from trellis.core.builder import BUILTIN


class ResolverContext:
    """A registry of resolvers by type name, optionally over a parent."""

    def __init__(self, resolvers=None, parent=None):
        self._factory = {}
        self._user = 0  # entries that are not BUILTIN
        self._plain = False  # only trellis's converters (put/get skip lookups)
        self._parent = parent
        for key, entry in (resolvers or {}).items():
            self.register(key, entry)

    def register(self, typename, resolver):
        if not isinstance(typename, str) or not typename:
            raise InvalidArgument(f"register takes a type name (str), got {typename!r}")
        if resolver is not BUILTIN and not callable(resolver):
            raise InvalidArgument(f"a resolver is callable(obj, **kw), got {resolver!r}")
        self.unregister(typename)
        self._factory[typename] = resolver
        self._user += resolver is not BUILTIN
        self._plain = self._user == 0 and bool(self._factory)

    def unregister(self, typename):
        entry = self._factory.pop(typename, None)
        self._user -= entry is not None and entry is not BUILTIN
        self._plain = self._user == 0 and bool(self._factory)

    def extend(self, resolvers=None):
        return ResolverContext(resolvers, parent=self)

    def lookup(self, typename):
        """The resolver for `typename` (BUILTIN for trellis's converters),
        or None: a registration equal to it, else, as Vineyard's, the first
        registration (in sorted order) it starts with; this context's before
        its parent's."""
        if typename is None:
            return None
        context = self
        while context is not None:
            resolver = context._factory.get(typename)
            if resolver is None:
                resolver = next((context._factory[key] for key in sorted(context._factory)
                                 if typename.startswith(key)), None)
            if resolver is not None:
                return resolver
            context = context._parent
        return None

    def has_user_resolvers(self):
        context = self
        while context is not None:
            if context._user:
                return True
            context = context._parent
        return False

    def run(self, obj, **kwargs):
        """The value of `obj` (an Object or ObjectMeta), resolved with this
        context (members too)."""
        from trellis import _codec
        from trellis._meta import Object

        meta = obj.meta if isinstance(obj, Object) else obj
        if meta._ctx is None:
            raise InvalidArgument(f"{meta!r} was not gotten with its blobs; get it with "
                                  "get_object or get_meta to resolve it")
        return _codec.decode(meta.to_dict(), meta._ctx.with_resolvers(self, kwargs))

    __call__ = run

    def __repr__(self):
        return f"ResolverContext({sorted(self._factory)})"


def call_resolver(resolver, obj, context, kwargs):
    """Calls a user resolver as Vineyard does: with the context as
    `resolver` when its signature takes one."""
    try:
        parameters = inspect.signature(resolver).parameters
        takes_context = "resolver" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    except (TypeError, ValueError):
        takes_context = False
    if takes_context:
        return resolver(obj, resolver=context, **kwargs)
    return resolver(obj, **kwargs)


default_resolver_context = ResolverContext()
_current = contextvars.ContextVar("trellis_resolvers", default=None)


def custom_resolvers():
    """The current context, or None when it is the default one holding
    only trellis's converters (the fast path of put and get)."""
    context = _current.get()
    if context is None:
        context = default_resolver_context
        if context._plain:
            return None
    return context


def get_current_resolvers():
    return _current.get() or default_resolver_context


@contextlib.contextmanager
def resolver_context(resolvers=None, base=None):
    """Within the block, gets use `resolvers` ({typename: resolver}) over
    `base` (default: the current context)."""
    context = (base or get_current_resolvers()).extend(resolvers)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
