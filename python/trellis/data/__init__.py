"""Vineyard's ``vineyard.data`` names: ``register_builtin_types`` and the
pickled-bytes streams (trellis.data.pickle)."""

from trellis.core.builder import BUILTIN, default_builder_context
from trellis.core.resolver import default_resolver_context


def builtin_typenames():
    """The type names trellis's own converters decode (docs/format.md)."""
    from trellis import _codec, client  # noqa: F401  client loads the converters

    return sorted(set(_codec.DECODERS) | set(_codec.PANDAS_TYPENAMES))


def register_builtin_types(builder_ctx=None, resolver_ctx=None):
    """Registers trellis's own converters (numpy, pandas, builtins, pickle
    for anything else) in `builder_ctx` (as the builder for ``object``) and
    `resolver_ctx` (for each of their type names). The default contexts
    have them from the start; call this for contexts of your own."""
    if builder_ctx is not None:
        builder_ctx.register(object, BUILTIN)
    if resolver_ctx is not None:
        for typename in builtin_typenames():
            resolver_ctx.register(typename, BUILTIN)


register_builtin_types(default_builder_context, default_resolver_context)
