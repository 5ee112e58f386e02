"""The bot: config, REST, plugins and the sharder wired into one task group."""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from sharder import CloseCode, GatewayClosedError, InternalSharder, ShardStatus
from sharder.testing import FakeDiscord

from .config import Config, resolve_token
from .context import PluginContext
from .dispatch import EventRouter
from .errors import BotrunError, ConfigError
from .heap import serving_heap
from .plugins import PluginSet, load_plugins
from .progress import StartupProgress
from .rest import RestClient
from .sessions import SessionStore
from .spill import folder_problem
from .watchdog import LoopWatchdog

__all__ = ["EMULATOR_TOKEN", "Bot"]

logger = logging.getLogger("botrun")

EMULATOR_TOKEN = "botrun-emulator-token"

_BOT_WIDE_CLOSE_CODES = frozenset(
    {
        CloseCode.AUTHENTICATION_FAILED,
        CloseCode.INVALID_API_VERSION,
        CloseCode.INVALID_INTENTS,
        CloseCode.DISALLOWED_INTENTS,
    }
)
"""Fatal close codes that every shard would get (same token, version and intents)."""


@dataclass
class _Gateway:
    url: str
    recommended: int
    session_start_limit: dict[str, Any]


class Bot:
    """Runs a config until stopped (a signal, ``stop()``, or every shard failing)."""

    def __init__(
        self,
        config: Config,
        *,
        plugins: PluginSet | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.environ = environ
        self.plugins = plugins if plugins is not None else load_plugins(config, environ=environ)
        self.sharder: InternalSharder | None = None
        self.router: EventRouter | None = None
        self.emulator: FakeDiscord | None = None
        self.exit_code = 0
        self._stop = anyio.Event()
        self._sessions: SessionStore | None = None
        self._restored: set[int] = set()
        """Shards given a session from the sessions file that has not resumed yet."""
        if config.sessions.file is not None and config.emulator.enabled:
            # The in-process emulator's sessions end with the process: nothing to resume.
            logger.info("sessions file not used: the built-in emulator forgets sessions on exit")
        elif config.sessions.file is not None:
            self._sessions = SessionStore(config.sessions.file, config_file=config.path)
        check_paths(config)

    def stop(self, exit_code: int = 0) -> None:
        """Begin a graceful shutdown."""
        self.exit_code = self.exit_code or exit_code
        self._stop.set()

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; returns the process exit code."""
        logger.info("%s", self.plugins.summary())
        async with AsyncExitStack() as stack:
            token, api_base = await self._credentials(stack)
            rest = await stack.enter_async_context(self._rest_client(token, api_base))
            gateway = await self._fetch_gateway(rest)
            async with anyio.create_task_group() as tg:
                if handle_signals:
                    tg.start_soon(self._watch_signals, tg.cancel_scope)
                await self._serve(tg, token, rest, gateway)
                tg.cancel_scope.cancel()
        return self.exit_code

    # ------------------------------------------------------------------ steps

    async def _credentials(self, stack: AsyncExitStack) -> tuple[str, str]:
        token = resolve_token(self.config, self.environ)
        api_base = self.config.discord.api_base
        emulator = self.config.emulator
        if emulator.enabled:
            token = token or EMULATOR_TOKEN
            self.emulator = await stack.enter_async_context(
                FakeDiscord(
                    token=token,
                    shards=emulator.shards,
                    max_concurrency=emulator.max_concurrency,
                    heartbeat_interval=emulator.heartbeat_interval,
                    guilds_per_shard=emulator.guilds,
                    identify_window=min(5.0, self.config.gateway.identify_timeout),
                    port=emulator.port,
                )
            )
            api_base = self.emulator.api_base
            logger.info("Discord emulator running at %s", api_base)
        if token is None:  # resolve_token only returns None with the emulator on
            raise BotrunError("no bot token configured")
        return token, api_base

    def _rest_client(self, token: str, api_base: str) -> RestClient:
        rest = self.config.rest
        return RestClient(
            token,
            api_base=api_base,
            timeout=rest.timeout,
            max_retries=rest.max_retries,
            global_limit=rest.global_limit,
            allow_insecure=self.config.discord.allow_insecure_transport,
        )

    async def _fetch_gateway(self, rest: RestClient) -> _Gateway:
        info = await rest.get_gateway_bot()
        gateway = _Gateway(str(info["url"]), int(info["shards"]), dict(info["session_start_limit"]))
        logger.info(
            "gateway %s: %d shards recommended, %s of %s session starts left, max_concurrency %s",
            gateway.url,
            gateway.recommended,
            gateway.session_start_limit.get("remaining"),
            gateway.session_start_limit.get("total"),
            gateway.session_start_limit.get("max_concurrency"),
        )
        return gateway

    async def _serve(
        self, tg: anyio.abc.TaskGroup, token: str, rest: RestClient, gateway: _Gateway
    ) -> None:
        config = self.config
        shard_ids, total = config.gateway.shard_plan(gateway.recommended)
        ids = list(shard_ids)
        contexts = {
            plugin.name: PluginContext(
                plugin.name,
                plugin.settings,
                config=config,
                rest=rest.for_plugin(plugin.name),
                task_group=tg,
            )
            for plugin in self.plugins.loaded
        }
        router = self.router = EventRouter(
            self.plugins.manager,
            contexts,
            capacity=config.plugins.backlog,
            overflow=config.plugins.overflow,
            slow_threshold=config.plugins.slow_handler_warning,
            spill_limit=config.plugins.spill_limit << 20,
            spill_dir=config.plugins.spill_dir,
        )
        failed = await self._call_lifecycle("on_startup", contexts)
        if failed:
            if config.plugins.strict:
                raise BotrunError(f"plugins failed in on_startup: {', '.join(failed)}")
            router.remove(failed)
        sharder = self.sharder = self._make_sharder(token, total, ids, gateway, router)
        for context in contexts.values():
            context.sharder = sharder
        router.attach(sharder)
        sharder.on("close", self._on_fatal_close)
        sharder.on("error", self._on_sharder_error)
        self._restored = {i for i, shard in sharder.shards.items() if shard.session is not None}
        if self._restored:
            sharder.on("ready", self._on_new_session)
            sharder.on("resumed", self._on_resumed)
        with serving_heap():  # from here on the heap is the bot's, not startup's
            async with anyio.create_task_group() as workers:
                workers.start_soon(router.run)
                workers.start_soon(LoopWatchdog(router, config.plugins.slow_handler_warning).run)
                async with sharder:
                    logger.info("starting %d of %d shards: %s", len(ids), total, _ranges(ids))
                    workers.start_soon(StartupProgress(sharder).run)
                    await sharder.connect()
                    if self.emulator is not None and config.emulator.chatter_interval > 0:
                        workers.start_soon(self._chatter)
                    if self._sessions is not None:
                        workers.start_soon(self._save_sessions_periodically)
                    await self._stop.wait()
                    await self._shutdown(contexts)
                workers.cancel_scope.cancel()

    def _make_sharder(
        self, token: str, total: int, ids: list[int], gateway: _Gateway, router: EventRouter
    ) -> InternalSharder:
        gw = self.config.gateway
        options: dict[str, Any] = {
            "token": token,
            "intents": self.config.resolved_intents,
            "url": gateway.url,
            "compression": None if gw.compression == "none" else gw.compression,
            "encoding": gw.encoding,
            "large_threshold": gw.large_threshold,
            "version": gw.version,
            "allow_insecure": self.config.discord.allow_insecure_transport,
            "disabled_events": router.unrouted_events(),
        }
        if gw.presence is not None:
            options["presence"] = gw.presence.as_payload()
        shard_options = self._sessions.load(total, ids) if self._sessions is not None else {}
        if shard_options:
            logger.info("resuming %d sessions from %s", len(shard_options), self._sessions_path())
        return InternalSharder(
            total=total,
            ids=ids,
            options=options,
            shard_options=shard_options,
            session_start_limit=gateway.session_start_limit,
            timeout=gw.identify_timeout,
        )

    async def _chatter(self) -> None:
        assert self.emulator is not None
        emulator = self.config.emulator
        await self.emulator.run_chatter(guilds=emulator.guilds, interval=emulator.chatter_interval)

    async def _shutdown(self, contexts: dict[str, PluginContext]) -> None:
        sharder, router = self.sharder, self.router
        assert sharder is not None
        assert router is not None
        logger.info("shutting down")
        for shard in sharder.shards.values():
            shard.pause_reading()  # what is read from here on would be lost, so read nothing
        await self._call_lifecycle("on_shutdown", contexts)
        cancelled = await router.stop(self.config.plugins.shutdown_grace)
        for description in cancelled:
            logger.warning("cancelled a handler still running at shutdown: %s", description)
        await sharder.close()
        self._save_sessions()
        stats = router.stats()
        logger.info(
            "stopped; handler errors by plugin: %s",
            {name: counts["errors"] for name, counts in stats.items()},
        )
        behind = {
            name: {"dropped": counts["dropped"], "spills": counts["spills"]}
            for name, counts in stats.items()
            if counts["dropped"] or counts["spills"]
        }
        if behind:
            logger.info("plugins that fell behind (events dropped, overflows to disk): %s", behind)

    async def _call_lifecycle(self, hook: str, contexts: dict[str, PluginContext]) -> list[str]:
        """Call on_startup / on_shutdown of every plugin; returns the plugins that raised."""
        failed = []
        caller = getattr(self.plugins.manager.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            context = contexts.get(impl.plugin_name)
            if context is None:
                continue
            try:
                result = impl.function(*[context for _ in impl.argnames])
                if hasattr(result, "__await__"):
                    with anyio.fail_after(self.config.plugins.shutdown_grace):
                        await result
            except Exception:
                logger.exception("plugin %r failed in %s", impl.plugin_name, hook)
                failed.append(impl.plugin_name)
        return failed

    # ------------------------------------------------------------------ sessions

    def _sessions_path(self) -> str:
        return str(self._sessions.path) if self._sessions is not None else ""

    def current_sessions(self) -> dict[int, dict[str, Any]]:
        """Sessions to save: each at the last sequence every plugin has finished."""
        sharder, router = self.sharder, self.router
        if sharder is None:
            return {}
        sessions = sharder.get_current_sessions()
        if router is not None:
            safe = router.safe_sequences()
            for shard_id, session in sessions.items():
                if shard_id in safe:
                    session["sequence"] = min(session["sequence"], safe[shard_id])
        return sessions

    def _save_sessions(self) -> None:
        if self._sessions is None or self.sharder is None:
            return
        try:
            self._sessions.save(self.sharder.total, self.current_sessions())
        except OSError as exc:
            logger.error("could not save sessions to %s: %s", self._sessions.path, exc)

    async def _save_sessions_periodically(self) -> None:
        while True:
            await anyio.sleep(self.config.sessions.save_interval)
            self._save_sessions()

    # ------------------------------------------------------------------ signals and failures

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self._stop.is_set():
                    logger.warning("second %s: stopping at once", signal.Signals(signum).name)
                    self.exit_code = self.exit_code or 130
                    scope.cancel()
                    return
                logger.info("%s received", signal.Signals(signum).name)
                self.stop()

    def _on_new_session(self, data: Any, shard_id: int) -> None:
        if shard_id in self._restored:
            self._restored.discard(shard_id)
            logger.warning(
                "shard %s could not resume its saved session (Discord no longer accepts it): "
                "identified anew; events sent while the bot was down are lost",
                shard_id,
            )

    def _on_resumed(self, data: Any, shard_id: int) -> None:
        if shard_id in self._restored:
            self._restored.discard(shard_id)
            replayed = data.get("replayed") if isinstance(data, dict) else None
            logger.info(
                "shard %s resumed its saved session: %s events replayed", shard_id, replayed
            )

    def _on_sharder_error(self, error: BaseException, shard_id: int) -> None:
        if not isinstance(error, GatewayClosedError):  # fatal closes are logged once, below
            logger.error("shard %s: %s", shard_id, error, exc_info=error)

    def _on_fatal_close(self, error: GatewayClosedError, shard_id: int) -> None:
        logger.error("shard %s stopped: %s", shard_id, error)
        if error.code in _BOT_WIDE_CLOSE_CODES:
            # Every other shard sends the same token, intents and version: it would
            # fail the same way, one identify at a time, until the last one did.
            if error.code == CloseCode.AUTHENTICATION_FAILED:
                logger.error(
                    "the bot token was rejected by the gateway: check the token or reset it "
                    "in the Developer Portal; stopping"
                )
            else:
                logger.error("every shard would be closed with code %s; stopping", error.code)
            self.stop(exit_code=1)
            return
        sharder = self.sharder
        if sharder is not None and all(
            s.status is ShardStatus.CLOSED for s_id, s in sharder.shards.items() if s_id != shard_id
        ):
            self.stop(exit_code=1)


def check_paths(config: Config) -> None:
    """Refuse, before anything connects, files and folders the bot could not safely use.

    Raises:
        ConfigError: naming the key, the path and why.
    """
    if config.sessions.file is not None:
        SessionStore(config.sessions.file, config_file=config.path).check_permissions()
    spill_dir = config.plugins.spill_dir
    problem = folder_problem(spill_dir) if spill_dir is not None else None
    if problem is not None:
        raise ConfigError(config.path, "plugins.spill_dir", problem)


def _ranges(ids: list[int]) -> str:
    """``0-3, 7`` for [0, 1, 2, 3, 7]."""
    parts: list[str] = []
    start = 0
    for index, shard_id in enumerate(ids):
        if index + 1 == len(ids) or ids[index + 1] != shard_id + 1:
            first = ids[start]
            parts.append(str(first) if first == shard_id else f"{first}-{shard_id}")
            start = index + 1
    return ", ".join(parts)
