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

from trellis._core import InvalidArgument
from trellis.core._registry import Registry, Scope, call_vineyard_style, check_entry

__all__ = ["ResolverContext", "default_resolver_context", "get_current_resolvers",
           "resolver_context"]


class ResolverContext(Registry):
    """A registry of resolvers by type name, optionally over a parent."""

    def _check(self, typename, resolver):
        if not isinstance(typename, str) or not typename:
            raise InvalidArgument(f"register takes a type name (str), got {typename!r}")
        check_entry(resolver, "resolver is callable(obj, **kw)")

    def _only_builtins(self):
        return self._user == 0 and bool(self._factory)

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


def call_resolver(resolver, obj, context, kwargs):
    """Calls a user resolver as Vineyard does: with the context as
    `resolver` when its signature takes one."""
    return call_vineyard_style(resolver, "resolver", context, (obj,), kwargs)


default_resolver_context = ResolverContext()
_scope = Scope(default_resolver_context, "trellis_resolvers")
custom_resolvers = _scope.custom
get_current_resolvers = _scope.current
resolver_context = _scope.block  # with resolver_context({typename: resolver}, base=None): ...
