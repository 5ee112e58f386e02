"""Rate-limit route keys: the method and path template, with major parameters kept.

Discord counts per-route limits per *top-level resource*: the id right after
``/channels/``, ``/guilds/`` or ``/webhooks/`` (plus the webhook token) is a
*major parameter*, so ``/channels/1/messages`` and ``/channels/2/messages`` are
limited separately. Every other snowflake (message, user, role ids...) is a
*minor* one and shares the limit, so it is replaced by ``{id}`` in the template.

Opaque segments that are not snowflakes (reaction emoji, invite codes, webhook
and interaction tokens) are replaced too, so a bot that reacts with a thousand
different emoji still has one route, not a thousand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

__all__ = ["Route", "route_for"]

_MAJOR: Final = {"channels": "{channel_id}", "guilds": "{guild_id}", "webhooks": "{webhook_id}"}
_TOKENS: Final = {"webhooks": "{webhook_token}", "interactions": "{interaction_token}"}
_OPAQUE: Final = {"invites": "{invite_code}", "templates": "{template_code}"}
_HIDDEN: Final = "***"


@dataclass(frozen=True, slots=True, repr=False)
class Route:
    """Where a request goes, as far as rate limits are concerned.

    Attributes:
        key: ``"METHOD /template"``; requests with the same key share a bucket hash.
        major: the major parameter values (``"123"``, ``"123/TOKEN"`` or ``""``).
        queue: ``key`` plus ``major``: requests with the same queue key are sent in order.
        path: the request path with webhook and interaction tokens hidden, for errors and logs.
        token_auth: the URL carries its own token (webhooks, interactions), so a 401
            there says nothing about the bot token.
    """

    key: str
    major: str
    queue: str
    path: str
    token_auth: bool

    def __repr__(self) -> str:  # ``major`` and ``queue`` may hold a webhook token
        return f"<Route {self.key} {self.path}>"


@functools.lru_cache(maxsize=8192)
def route_for(method: str, path: str) -> Route:
    """The route of ``method path`` (cached: a bot calls the same few paths again and again)."""
    parts = path.partition("?")[0].strip("/").split("/")
    template: list[str] = []
    shown: list[str] = []
    major: list[str] = []
    token_auth = False
    for index, part in enumerate(parts):
        previous = parts[index - 1] if index else ""
        if index == 1 and previous in _MAJOR and part.isdigit():
            template.append(_MAJOR[previous])
            major.append(part)
        elif index == 2 and parts[0] in _TOKENS and not part.isdigit():
            template.append(_TOKENS[parts[0]])
            if parts[0] == "webhooks":  # webhook_id + webhook_token is the major parameter
                major.append(part)
            shown.append(_HIDDEN)
            token_auth = True
            continue
        elif previous == "reactions":
            template.append("{reaction}")  # the emoji, and the user after it, share one limit
            shown.extend(parts[index:])
            break
        elif previous in _OPAQUE:
            template.append(_OPAQUE[previous])
        elif part.isdigit():
            template.append("{id}")
        else:
            template.append(part)
        shown.append(part)
    key = f"{method} /{'/'.join(template)}"
    majors = "/".join(major)
    return Route(key, majors, f"{key} {majors}", "/" + "/".join(shown), token_auth)
