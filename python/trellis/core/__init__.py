"""Vineyard's ``vineyard.core`` names: the builder and resolver contexts
that let user types be put and gotten (trellis.core.builder,
trellis.core.resolver), and the client and object types."""

from trellis.core.builder import (  # noqa: F401
    BuilderContext,
    builder_context,
    default_builder_context,
    get_current_builders,
)
from trellis.core.resolver import (  # noqa: F401
    ResolverContext,
    default_resolver_context,
    get_current_resolvers,
    resolver_context,
)
from trellis._meta import Object, ObjectMeta  # noqa: F401
from trellis._core import Blob, BlobWriter, ObjectID  # noqa: F401

BlobBuilder = BlobWriter


def __getattr__(name):
    # trellis.client imports this package's modules, so Client is looked up
    # when first asked for.
    if name == "Client":
        from trellis.client import Client

        return Client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
