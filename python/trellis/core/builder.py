"""Builders: how ``put`` turns a Python value of a given type into an object.

Vineyard's extension point, under its names. A builder is
``fn(client, value, **kwargs)`` or ``fn(client, value, builder, **kwargs)``
(`builder` the context, to put members with ``builder.run(client, v)``)
returning the ObjectID (or the ObjectMeta)
of the object it made, usually with ``client.create_blob`` and
``client.create_metadata``::

    def build_point(client, value, **kw):
        meta = trellis.ObjectMeta()
        meta["typename"] = "my::Point"
        meta["x"], meta["y"] = value.x, value.y
        return client.create_metadata(meta)

    default_builder_context.register(Point, build_point)
    oid = client.put(Point(1, 2))          # also inside lists, dicts, ...

Lookup walks the value's type's MRO, so a builder for a base class serves
its subclasses. trellis's own converters (docs/format.md) are registered as
the builder for ``object`` by ``register_builtin_types``; a context without
them raises UnsupportedType for a type it has no builder for.
"""

from trellis._core import InvalidArgument, ObjectID, UnsupportedType
from trellis.core._registry import BUILTIN, Registry, Scope, call_vineyard_style, check_entry

__all__ = ["BUILTIN", "BuilderContext", "builder_context", "default_builder_context",
           "get_current_builders"]


class BuilderContext(Registry):
    """A registry of builders by Python type, optionally over a parent
    context it falls back to."""

    def _check(self, type_id, builder):
        if not isinstance(type_id, type):
            raise InvalidArgument(f"register takes a type, got {type_id!r}")
        check_entry(builder, "builder is callable(client, value, **kw)")

    def _only_builtins(self):
        return self._user == 0 and self._factory.get(object) is BUILTIN

    @staticmethod
    def _key_name(type_id):
        return type_id.__qualname__

    def lookup(self, value_type):
        """The builder for `value_type` (BUILTIN for trellis's converters),
        or None."""
        for base in value_type.__mro__:
            context = self
            while context is not None:
                builder = context._factory.get(base)
                if builder is not None:
                    return builder
                context = context._parent
        return None

    def run(self, client, value, **kwargs):
        """Puts `value` with this context's builders; returns its ObjectID."""
        return client.put(value, builder=self, **kwargs)

    __call__ = run


def call_builder(builder, client, value, context, kwargs):
    """Calls a user builder as Vineyard does (with the context as `builder`
    when its signature takes one, to build members with
    ``builder.run(client, member)``); returns the ObjectID it made."""
    made = call_vineyard_style(builder, "builder", context, (client, value), kwargs)
    return as_object_id(made, value)


def as_object_id(made, value):
    """The ObjectID a builder returned (an ObjectID, ObjectMeta or Object)."""
    if isinstance(made, ObjectID):
        return made
    ident = getattr(made, "id", None)
    if isinstance(ident, ObjectID):
        return ident
    raise UnsupportedType(f"the builder for {type(value).__qualname__} returned "
                          f"{type(made).__name__}, not an ObjectID or ObjectMeta")


default_builder_context = BuilderContext()
_scope = Scope(default_builder_context, "trellis_builders")
# The context in use, or None for the default with trellis's converters only.
custom_builders = _scope.custom
# The builder context puts use now: the innermost builder_context block's,
# else default_builder_context.
get_current_builders = _scope.current
builder_context = _scope.block  # with builder_context({type: builder}, base=None): ...
