"""Discord's HTTP API for the runtime and plugins, within Discord's rate limits.

``RestClient`` is the client; ``rest.for_plugin(name)`` gives each plugin a view
that counts its invalid requests under its own name. See ``_client`` for how
rate limits, ordering and retries work, and ``_retry`` for what is retried.
"""

from __future__ import annotations

from ._client import DEFAULT_API_BASE, FileSpec, PluginRest, RestClient
from ._routes import Route, route_for
from .errors import (
    Forbidden,
    HTTPError,
    NetworkError,
    NotFound,
    RestError,
    TokenRejectedError,
    Unauthorized,
)

__all__ = [
    "DEFAULT_API_BASE",
    "FileSpec",
    "Forbidden",
    "HTTPError",
    "NetworkError",
    "NotFound",
    "PluginRest",
    "RestClient",
    "RestError",
    "Route",
    "TokenRejectedError",
    "Unauthorized",
    "route_for",
]
