"""The ``bot`` argument of every hook: one context object per plugin."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio.abc

from sharder import InternalSharder, WebsocketShard

if TYPE_CHECKING:
    from .config import Config

__all__ = ["PluginContext"]


class PluginContext:
    """What a plugin gets as ``bot``: its settings, a logger, the gateway, REST, tasks.

    Attributes:
        name: the plugin's name.
        settings: the plugin's ``[plugins.NAME]`` table, as its ``Settings``
            dataclass if it declares one, else a dict.
        log: a logger named ``botrun.plugin.NAME``.
        rest: the REST client (rate limits handled), tagged with this plugin's
            name so that its invalid requests are counted against it.
        sharder: the :class:`~sharder.InternalSharder` (None before startup
            finishes connecting; ``on_startup`` runs before the gateway starts).
        config: the whole botrun config (read-only).
    """

    def __init__(
        self,
        name: str,
        settings: Any,
        *,
        config: Config,
        rest: Any,
        task_group: anyio.abc.TaskGroup,
    ) -> None:
        self.name = name
        self.settings = settings
        self.config = config
        self.rest = rest
        self.log = logging.getLogger(f"botrun.plugin.{name}")
        self.sharder: InternalSharder | None = None
        self._task_group = task_group

    def __repr__(self) -> str:
        return f"<PluginContext {self.name!r}>"

    def start_task(
        self, function: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None
    ) -> None:
        """Run ``await function(*args)`` in the background until it returns or shutdown.

        The runtime cancels it at shutdown; if it raises, the error is logged with
        the plugin's name and the bot keeps running.
        """
        label = name or getattr(function, "__name__", "task")

        async def guarded() -> None:
            try:
                await function(*args)
            except Exception:
                self.log.exception("background task %r of plugin %r failed", label, self.name)

        self._task_group.start_soon(guarded, name=f"{self.name}:{label}")

    def shard_for_guild(self, guild_id: int | str) -> WebsocketShard:
        """The shard that carries ``guild_id`` (Discord's routing formula)."""
        sharder = self._require_sharder()
        shard_id = (int(guild_id) >> 22) % sharder.total
        try:
            return sharder.shards[shard_id]
        except KeyError:
            raise LookupError(f"guild {guild_id} is on shard {shard_id}, not run here") from None

    async def update_presence(self, presence: dict[str, Any]) -> None:
        """Set the bot's status and activities on every shard of this process."""
        sharder = self._require_sharder()
        async with anyio.create_task_group() as tg:
            for shard in sharder.shards.values():
                tg.start_soon(shard.update_presence, presence)

    async def request_guild_members(self, guild_id: int | str, **options: Any) -> dict[str, Any]:
        """Members of a guild, collected from every GUILD_MEMBERS_CHUNK (see WebsocketShard)."""
        return await self.shard_for_guild(guild_id).request_guild_members(guild_id, **options)

    async def update_voice_state(
        self, guild_id: int | str, channel_id: int | str | None = None, **options: Any
    ) -> dict[str, Any]:
        """Join, move or leave a voice channel (see WebsocketShard.update_voice_state)."""
        return await self.shard_for_guild(guild_id).update_voice_state(
            guild_id, channel_id, **options
        )

    def _require_sharder(self) -> InternalSharder:
        if self.sharder is None:
            raise RuntimeError("the gateway is not started yet (on_startup runs before it)")
        return self.sharder
