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

import contextlib
import contextvars
import inspect

from trellis._core import InvalidArgument, ObjectID, UnsupportedType


class _Builtin:
    """The builder entry that means "trellis's own converters"."""

    def __repr__(self):
        return "<trellis builtin converters>"


BUILTIN = _Builtin()


class BuilderContext:
    """A registry of builders by Python type, optionally over a parent
    context it falls back to."""

    def __init__(self, builders=None, parent=None):
        self._factory = {}
        self._user = 0  # entries that are not BUILTIN
        self._plain = False  # only trellis's converters (put/get skip lookups)
        self._parent = parent
        for key, entry in (builders or {}).items():
            self.register(key, entry)

    def register(self, type_id, builder):
        """Builds values of `type_id` (and its subclasses) with `builder`."""
        if not isinstance(type_id, type):
            raise InvalidArgument(f"register takes a type, got {type_id!r}")
        if builder is not BUILTIN and not callable(builder):
            raise InvalidArgument(f"a builder is callable(client, value, **kw), got {builder!r}")
        self.unregister(type_id)
        self._factory[type_id] = builder
        self._user += builder is not BUILTIN
        self._plain = self._user == 0 and self._factory.get(object) is BUILTIN

    def unregister(self, type_id):
        entry = self._factory.pop(type_id, None)
        self._user -= entry is not None and entry is not BUILTIN
        self._plain = self._user == 0 and self._factory.get(object) is BUILTIN

    def extend(self, builders=None):
        """A child context: `builders` ({type: builder}) over this one."""
        return BuilderContext(builders, parent=self)

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

    def has_user_builders(self):
        """True if any builder besides the builtins is registered here or in
        a parent (put skips the lookup otherwise)."""
        context = self
        while context is not None:
            if context._user:
                return True
            context = context._parent
        return False

    def run(self, client, value, **kwargs):
        """Puts `value` with this context's builders; returns its ObjectID."""
        return client.put(value, builder=self, **kwargs)

    __call__ = run

    def __repr__(self):
        return f"BuilderContext({sorted(t.__qualname__ for t in self._factory)})"


def call_builder(builder, client, value, context, kwargs):
    """Calls a user builder as Vineyard does: with the context as `builder`
    when its signature takes one (to build members with
    ``builder.run(client, member)``). Returns the ObjectID it made."""
    try:
        parameters = inspect.signature(builder).parameters
        takes_context = "builder" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    except (TypeError, ValueError):
        takes_context = False
    if takes_context:
        made = builder(client, value, builder=context, **kwargs)
    else:
        made = builder(client, value, **kwargs)
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
_current = contextvars.ContextVar("trellis_builders", default=None)


def custom_builders():
    """The current context, or None when it is the default one holding
    only trellis's converters (the fast path of put and get)."""
    context = _current.get()
    if context is None:
        context = default_builder_context
        if context._plain:
            return None
    return context


def get_current_builders():
    """The builder context puts use now: the innermost ``builder_context``
    block's, else ``default_builder_context``."""
    return _current.get() or default_builder_context


@contextlib.contextmanager
def builder_context(builders=None, base=None):
    """Within the block, puts use `builders` ({type: builder}) over `base`
    (default: the current context)."""
    context = (base or get_current_builders()).extend(builders)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
