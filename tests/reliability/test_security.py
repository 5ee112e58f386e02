"""Security: a secret token, verified TLS, no plain transport, no loose permissions.

The token scans read everything the soak and the restart runs printed or wrote
(the bot's stdout and stderr at DEBUG level, every shard debug event and error
a plugin saw, the plugins' records, the sessions file) and an in-process run
whose log records, debug events, exceptions and reprs are all kept; each is
searched for the token, each of its dot-separated (base64) parts, and the
token base64-encoded.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme

from benchmarks.soak import SOAK_TOKEN, SoakResult
from runtime.bot import Bot
from runtime.config import load_config
from runtime.errors import ConfigError
from runtime.plugins import load_plugins
from runtime.rest import RestClient, RestError
from runtime.sessions import SessionStore
from sharder import Session, WebsocketShard
from sharder._transport import default_ssl_context
from sharder.testing import FakeDiscord
from tests.reliability.harness import TOKEN as RESTART_TOKEN
from tests.reliability.scenarios import RestartRun

SECRET = "ODg4Nzc3NjY2NTU1NDQ0MzMz.Gx1Yz2.aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4yZ5"


def needles(token: str) -> list[str]:
    """The token, its dot-separated base64 parts, and the token base64-encoded."""
    parts = [part for part in token.split(".") if len(part) >= 6]
    encoded = [
        base64.b64encode(token.encode()).decode(),
        base64.urlsafe_b64encode(token.encode()).decode().rstrip("="),
    ]
    return [token, *parts, *encoded]


def leaks(text: str | bytes, token: str) -> list[str]:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [needle for needle in needles(token) if needle.encode() in data]


def scan_folder(folder: Path, token: str) -> dict[str, list[str]]:
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            hits = leaks(path.read_bytes(), token)
            if hits:
                found[str(path.relative_to(folder))] = hits
    return found


# ---------------------------------------------------------------- the token


@pytest.mark.slow
def test_the_soak_and_the_restart_runs_never_show_the_token(
    soak_result: SoakResult, sigterm_run: RestartRun, sigkill_run: RestartRun
) -> None:
    runs = [
        (Path(soak_result.workdir), SOAK_TOKEN),
        (sigterm_run.bot.workdir, RESTART_TOKEN),
        (sigkill_run.bot.workdir, RESTART_TOKEN),
    ]
    for folder, token in runs:
        outputs = [p.name for p in folder.iterdir() if p.is_file()]
        # The scan read real outputs: logs, debug events, records and the sessions file.
        assert any(name.startswith("stderr") for name in outputs), outputs
        assert "debug.txt" in outputs
        assert any(name.startswith("sessions") for name in outputs), outputs
        debug = (folder / "debug.txt").read_text(encoding="utf-8")
        assert "sending IDENTIFY" in debug or "sending RESUME" in debug
        assert scan_folder(folder, token) == {}, folder
    # The restart runs logged at DEBUG level, so that every line the bot can write was written.
    assert "DEBUG" in sigterm_run.bot.stderr(1)


SPY = """
import traceback

from runtime import hookimpl

lines = []


def keep(what, value):
    lines.append(f"{what}: {value!s} | {value!r}")
    if isinstance(value, BaseException):
        lines.append("".join(traceback.format_exception(value)))


@hookimpl
def on_debug(data, shard_id):
    keep("debug", data)


@hookimpl
def on_error(data, shard_id):
    keep("error", data)


@hookimpl
def on_close(data, shard_id):
    keep("close", data)


@hookimpl
async def on_message_create(bot, data, shard_id):
    shard = bot.sharder.shards[shard_id]
    for name, value in [
        ("context", bot),
        ("rest", bot.rest),
        ("sharder", bot.sharder),
        ("config", bot.config),
        ("discord config", bot.config.discord),
        ("shard", shard),
        ("session", shard.session),
        ("sessions", bot.sharder.get_current_sessions()),
        ("shard state", {k: v for k, v in vars(shard).items() if k != "_token"}),
    ]:
        keep(name, value)
    if data.get("content") == "rest":
        try:
            await bot.rest.get("/channels/404/messages/404")
        except Exception as exc:
            keep("rest error", exc)
    if data.get("content") == "raise":
        raise RuntimeError("a plugin failing on purpose")
"""


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))  # with the traceback, if any


@pytest.fixture
def all_logs() -> Iterator[_Keep]:
    handler = _Keep()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_no_log_line_debug_event_exception_repr_or_sessions_file_shows_the_token(
    tmp_path: Path, all_logs: _Keep
) -> None:
    folder = tmp_path / "plugins.d"
    folder.mkdir(mode=0o700)
    (folder / "spy.py").write_text(SPY, encoding="utf-8")
    async with FakeDiscord(token=SECRET, heartbeat_interval=0.2, identify_window=0.2) as discord:
        config_path = tmp_path / "bot.toml"
        config_path.write_text(
            f"""\
[discord]
token = "{SECRET}"
api_base = "{discord.api_base}"
intents = ["GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]
[plugins]
paths = ["plugins.d"]
enabled = ["spy"]
[sessions]
file = "sessions.json"
save_interval = 0.1
[emulator]
enabled = false
""",
            encoding="utf-8",
        )
        config = load_config(config_path)
        bot = Bot(config)
        result: list[int] = []

        async def run() -> None:
            result.append(await bot.run(handle_signals=False))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await discord.wait_for("ready", shard_id=0, timeout=10)
            spy: Any = None
            with anyio.fail_after(10):
                while spy is None or not any(line.startswith("debug: ready") for line in spy.lines):
                    await anyio.sleep(0.02)
                    spy = bot.plugins.by_name("spy").module
            for content in ("hello", "rest", "raise"):
                await discord.dispatch(0, "MESSAGE_CREATE", {"content": content, "channel_id": "1"})
            with anyio.fail_after(10):
                while not any(line.startswith("rest error") for line in spy.lines):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            # Faults: each reconnect sends RESUME, with the token, again.
            # (Few of them: quick successive reconnects back off, 0.5-1 s, then 1-2 s...)
            await discord.drop(0)
            await discord.wait_for("resumed", shard_id=0, count=1, timeout=10)
            await discord.invalidate(0, resumable=True)
            await discord.wait_for("resumed", shard_id=0, count=2, timeout=10)
            discord.zombify(0)
            await discord.wait_for("resumed", shard_id=0, count=3, timeout=10)
            await discord.dispatch(0, "MESSAGE_CREATE", {"content": "raise", "channel_id": "1"})
            await anyio.sleep(0.3)
            # Then the token is reset: the next RESUME fails with 4004 and the bot stops.
            discord.set_token("another-token")
            await discord.drop(0)
            with anyio.fail_after(10):
                while not result:  # noqa: ASYNC110 - the bot stops on its own
                    await anyio.sleep(0.05)
    assert result == [1]
    texts = {
        "log": "\n".join(all_logs.lines),
        "plugin": "\n".join(spy.lines),
        "sessions file": (tmp_path / "sessions.json").read_text(encoding="utf-8"),
    }
    # What was kept is real: tracebacks, debug lines, the 4004 and reprs were all captured.
    assert "a plugin failing on purpose" in texts["log"]
    assert "Traceback" in texts["log"]
    assert "sending RESUME" in texts["plugin"]
    assert "4004" in texts["plugin"]
    assert "rest error" in texts["plugin"]
    assert "<WebsocketShard" in texts["plugin"]
    for name, text in texts.items():
        assert leaks(text, SECRET) == [], name


def test_reprs_and_errors_of_config_shard_and_rest_hide_the_token(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text(f'[discord]\ntoken = "{SECRET}"\n')
    config = load_config(path)
    shard = WebsocketShard({"token": SECRET, "intents": 0})
    rest = RestClient(SECRET)
    shown = [repr(config), str(config), repr(config.discord), repr(shard), repr(rest)]
    shown.append(repr(config.discord.token))
    for bad in ({"token": SECRET, "intents": -1}, {"token": SECRET, "intents": 0, "nope": 1}):
        with pytest.raises((ValueError, TypeError)) as info:
            WebsocketShard(bad)
        shown.append(str(info.value))
    path.write_text(f'[discord]\ntoken = "{SECRET} "\n')
    with pytest.raises(ConfigError) as config_error:
        load_config(path)
    shown.append(str(config_error.value))
    for text in shown:
        assert leaks(text, SECRET) == [], text


def test_the_sessions_file_holds_only_session_fields(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions.json")
    store.save(1, {0: {**Session("abc", 5, "wss://x").to_dict(), "token": SECRET}})
    text = (tmp_path / "sessions.json").read_text()
    assert leaks(text, SECRET) == []
    assert oct((tmp_path / "sessions.json").stat().st_mode & 0o777) == oct(0o600)


# ---------------------------------------------------------------- plain transport


@pytest.mark.parametrize(
    "url", ["ws://gateway.example.com", "ws://10.1.2.3:8080", "ws://[2001:db8::1]/"]
)
def test_a_shard_refuses_to_send_the_token_over_plain_ws_to_another_host(url: str) -> None:
    with pytest.raises(ValueError, match="refusing to send the token"):
        WebsocketShard({"token": SECRET, "intents": 0, "url": url})
    # Unless explicitly allowed.
    WebsocketShard({"token": SECRET, "intents": 0, "url": url, "allow_insecure": True})


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:1", "ws://localhost:1", "ws://[::1]:1", "wss://gateway.example.com"]
)
def test_a_shard_accepts_wss_and_plain_ws_to_loopback(url: str) -> None:
    WebsocketShard({"token": SECRET, "intents": 0, "url": url})


def test_a_plain_resume_url_to_another_host_is_ignored() -> None:
    def url_with(resume_url: str) -> str:
        shard = WebsocketShard(
            {"token": SECRET, "intents": 0, "session": Session("s", 3, resume_url)}
        )
        return shard._gateway_url()

    assert url_with("ws://resume.example.com").startswith("wss://gateway.discord.gg/")
    assert url_with("wss://resume.example.com").startswith("wss://resume.example.com/")


@pytest.mark.parametrize("base", ["http://discord.example.com/api/v10", "http://10.0.0.2/api"])
def test_rest_refuses_to_send_the_token_over_plain_http_to_another_host(base: str) -> None:
    with pytest.raises(ValueError, match="unencrypted"):
        RestClient(SECRET, api_base=base)
    RestClient(SECRET, api_base=base, allow_insecure=True)
    RestClient(SECRET, api_base="http://127.0.0.1:9/api/v10")


def test_the_config_refuses_plain_http_to_another_host_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text('[discord]\napi_base = "http://discord.example.com/api/v10"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "discord.api_base"
    assert "allow_insecure_transport" in str(info.value)
    path.write_text(
        '[discord]\napi_base = "http://discord.example.com/api/v10"\n'
        "allow_insecure_transport = true\n"
    )
    assert load_config(path).discord.allow_insecure_transport is True


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_certificates_are_verified_by_default() -> None:
    context = default_ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


async def _run_shard(discord: FakeDiscord, options: dict[str, Any], seconds: float) -> list[str]:
    lines: list[str] = []
    shard = WebsocketShard(
        {
            "token": SECRET,
            "intents": 513,
            "url": discord.gateway_url,
            "reconnect_delay": 0.05,
            "connect_timeout": 2.0,
            **options,
        }
    )
    shard.on("debug", lambda line, _: lines.append(line))
    async with anyio.create_task_group() as tg:
        tg.start_soon(shard.run)
        with anyio.move_on_after(seconds):
            await discord.wait_for("ready", shard_id=0, timeout=seconds)
        await shard.close()
    return lines


async def test_wss_with_an_untrusted_certificate_fails_and_a_trusted_one_works(
    ca: trustme.CA,
) -> None:
    async with FakeDiscord(token=SECRET, ssl_context=_server_context(ca)) as discord:
        assert discord.gateway_url.startswith("wss://")
        lines = await _run_shard(discord, {}, 1.0)
        assert discord.entries("connect") == []  # TLS failed before any HTTP
        assert any("CERTIFICATE_VERIFY_FAILED" in line for line in lines), lines
        await _run_shard(discord, {"ssl_context": _trusting(ca)}, 10.0)
        assert len(discord.entries("ready")) == 1


async def test_wss_to_a_host_the_certificate_does_not_name_fails(tmp_path: Path) -> None:
    other = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.issue_cert("gateway.example.com").configure_cert(server)
    async with FakeDiscord(token=SECRET, ssl_context=server) as discord:
        lines = await _run_shard(discord, {"ssl_context": _trusting(other)}, 1.0)
    assert discord.entries("ready") == []
    assert any("CERTIFICATE_VERIFY_FAILED" in line for line in lines), lines


async def test_https_rest_with_an_untrusted_certificate_fails_and_a_trusted_one_works(
    ca: trustme.CA,
) -> None:
    async with FakeDiscord(token=SECRET, ssl_context=_server_context(ca)) as discord:
        assert discord.api_base.startswith("https://")
        async with RestClient(SECRET, api_base=discord.api_base, max_retries=0) as rest:
            with pytest.raises(RestError) as info:
                await rest.get_gateway_bot()
            chain = _chain(info.value)
            assert any(isinstance(e, ssl.SSLCertVerificationError) for e in chain), chain
            assert leaks("".join(traceback.format_exception(info.value)), SECRET) == []
        transport = httpx.AsyncHTTPTransport(verify=_trusting(ca))
        async with RestClient(SECRET, api_base=discord.api_base, transport=transport) as rest:
            info_ok = await rest.get_gateway_bot()
        assert info_ok["url"].startswith("wss://")


def _chain(error: BaseException | None) -> list[BaseException]:
    found = []
    while error is not None and error not in found:
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


# ---------------------------------------------------------------- permissions


OFFLINE = '[discord]\ntoken_env = "RELIABILITY_TOKEN"\napi_base = "http://127.0.0.1:9/api/v10"\n'
"""A bot against a (closed) loopback port: enough to reach the sessions file check."""
ENVIRON = {"RELIABILITY_TOKEN": SECRET}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BOTRUN_LOAD_PLUGINS"}
    env.update(ENVIRON)
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mode", [0o777, 0o1777], ids=["world-writable", "sticky"])
def test_a_plugin_folder_writable_by_every_user_is_refused(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "plugins.d"
    folder.mkdir()
    (folder / "mine.py").write_text("")
    os.chmod(folder, mode)
    config = tmp_path / "bot.toml"
    config.write_text('[plugins]\npaths = ["plugins.d"]\n[emulator]\nenabled = true\n')
    with pytest.raises(ConfigError, match="writable by every user"):
        load_plugins(load_config(config))
    for command in ("check", "run"):
        done = _cli(command, str(config), cwd=tmp_path)
        assert done.returncode == 78, done.stderr
        assert "plugins.paths" in done.stderr
        assert f"chmod o-w {folder}" in done.stderr


def test_a_drop_in_plugin_file_writable_by_every_user_is_left_out_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "plugins.d"
    folder.mkdir(mode=0o755)
    (folder / "good.py").write_text("")
    (folder / "open.py").write_text("")
    os.chmod(folder / "open.py", 0o666)
    config = tmp_path / "bot.toml"
    config.write_text('[plugins]\npaths = ["plugins.d"]\n[emulator]\nenabled = true\n')
    plugins = load_plugins(load_config(config))
    assert plugins.by_name("good").loaded
    assert not plugins.by_name("open").loaded
    assert "writable by every user" in caplog.text
    with pytest.raises(ConfigError, match="writable by every user"):
        load_plugins(load_config(config), strict=True)


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_a_sessions_file_writable_by_other_users_is_refused(tmp_path: Path, mode: int) -> None:
    sessions = tmp_path / "sessions.json"
    sessions.write_text("{}")
    os.chmod(sessions, mode)
    config = tmp_path / "bot.toml"
    config.write_text(OFFLINE + '[sessions]\nfile = "sessions.json"\n')
    with pytest.raises(ConfigError, match="writable by other users"):
        Bot(load_config(config), environ=ENVIRON)
    done = _cli("run", str(config), cwd=tmp_path)
    assert done.returncode == 78, done.stderr
    assert "sessions.file" in done.stderr
    assert f"chmod 600 {sessions}" in done.stderr


def test_a_sessions_folder_writable_by_every_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    config = tmp_path / "bot.toml"
    config.write_text(OFFLINE + '[sessions]\nfile = "shared/sessions.json"\n')
    with pytest.raises(ConfigError, match="writable by every user"):
        Bot(load_config(config), environ=ENVIRON)
