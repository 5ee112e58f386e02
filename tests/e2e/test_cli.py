"""``botrun`` as a user runs it: a subprocess, a config file, Discord on loopback."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from runtime import __version__
from runtime.errors import EX_CONFIG
from sharder.testing import FakeDiscord

from .helpers import (
    DROPIN,
    STARTUP_TIMEOUT,
    TOKEN,
    TOKEN_ENV,
    TRACEBACK,
    BotProcess,
    assert_clean_log,
    assert_no_token,
    bot_env,
    botrun,
    guild_message,
    read_records,
    run_cli,
    start_bot,
    wait_for_log,
    wait_for_messages,
    wait_for_records,
    wait_until_ready,
    write_config,
)


async def _exercise(discord: FakeDiscord, bot: BotProcess, record: Path) -> None:
    """READY reaches the drop-in; a message reaches it; ``!ping`` is answered over REST."""
    ready = await wait_until_ready(discord, bot, record)
    assert ready["shard_id"] == 0
    assert ready["session_id"] in discord.sessions
    assert len(ready["guilds"]) == 1

    hello = guild_message("hello from the e2e test")
    await discord.dispatch(0, "MESSAGE_CREATE", hello)
    ping = guild_message("!ping")
    await discord.dispatch(0, "MESSAGE_CREATE", ping)

    received = await wait_for_records(
        record, bot, lambda r: r["hook"] == "on_message_create", count=2
    )
    assert [(r["id"], r["content"], r["shard_id"]) for r in received] == [
        (hello["id"], "hello from the e2e test", 0),
        (ping["id"], "!ping", 0),
    ]

    [reply] = await wait_for_messages(
        discord, bot, lambda m: str(m.body.get("content", "")).startswith("pong")
    )
    assert reply.channel_id == int(ping["channel_id"])
    assert reply.body["message_reference"]["message_id"] == ping["id"]
    assert reply.headers["user-agent"].startswith("DiscordBot")


async def _stop_cleanly(
    discord: FakeDiscord, bot: BotProcess, record: Path, signum: signal.Signals
) -> None:
    """A signal: exit 0, on_shutdown called, the gateway closed by the bot, a clean log."""
    assert await bot.terminate(signum) == 0, bot.output
    log = bot.stderr
    assert f"{signum.name} received" in log
    assert "shutting down" in log
    assert_clean_log(bot.output)
    hooks = [r["hook"] for r in read_records(record)]
    assert hooks[0] == "on_startup"
    assert hooks[-1] == "on_shutdown"
    assert hooks.count("on_ready") == 1
    assert [e.shard_id for e in discord.entries("client_close")] == [0]
    assert not discord.violations


# ---------------------------------------------------------------------- running the bot


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["{config}", "--backend", "asyncio"], id="asyncio"),
        pytest.param(["--backend", "trio", "{config}"], id="trio"),
    ],
)
async def test_bot_runs_plugins_and_stops_cleanly_on_sigterm(
    discord: FakeDiscord, tmp_path: Path, args: list[str]
) -> None:
    record = tmp_path / "record.jsonl"
    config = write_config(tmp_path, api_base=discord.api_base, record=record)
    argv = botrun(*(str(config) if arg == "{config}" else arg for arg in args))
    async with start_bot(argv, cwd=tmp_path) as bot:
        await _exercise(discord, bot, record)
        await wait_for_log(bot, "all 1 shards ready in")
        await _stop_cleanly(discord, bot, record, signal.SIGTERM)


async def test_python_m_runtime_runs_like_botrun_and_stops_on_sigint_hiding_the_token(
    discord: FakeDiscord, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    config = write_config(tmp_path, api_base=discord.api_base, record=record)
    argv: list[str | Path] = [sys.executable, "-m", "runtime", config, "--log-level", "DEBUG"]
    async with start_bot(argv, cwd=tmp_path) as bot:
        await _exercise(discord, bot, record)
        await _stop_cleanly(discord, bot, record, signal.SIGINT)
    assert " DEBUG " in bot.stderr  # the override took effect: the most verbose log was scanned


async def test_restart_resumes_the_saved_session_and_gets_what_was_sent_meanwhile(
    discord: FakeDiscord, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    config = write_config(
        tmp_path,
        api_base=discord.api_base,
        record=record,
        extra='[sessions]\nfile = "sessions.json"\n',
    )
    async with start_bot(botrun(config), cwd=tmp_path, label="first") as bot:
        ready = await wait_until_ready(discord, bot, record)
        assert await bot.terminate() == 0, bot.output
    assert_clean_log(bot.output)
    saved = json.loads((tmp_path / "sessions.json").read_text("utf-8"))
    assert saved["shards"]["0"]["session_id"] == ready["session_id"]

    meanwhile = guild_message("sent while the bot was down")
    await discord.dispatch(0, "MESSAGE_CREATE", meanwhile)
    async with start_bot(botrun(config), cwd=tmp_path, label="second") as bot:
        await discord.wait_for("resumed", timeout=STARTUP_TIMEOUT)
        [received] = await wait_for_records(record, bot, lambda r: r["hook"] == "on_message_create")
        assert received["id"] == meanwhile["id"]
        assert await bot.terminate() == 0, bot.output
    assert "resuming 1 sessions from" in bot.stderr
    assert_clean_log(bot.output)
    assert len(discord.entries("identify")) == 1
    assert [r["hook"] for r in read_records(record)].count("on_ready") == 1


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_token_a_plugin_logs_or_raises_with_is_redacted(
    discord: FakeDiscord, tmp_path: Path, log_format: str
) -> None:
    leaky = tmp_path / "leaky_plugins"
    leaky.mkdir()
    (leaky / "leaky.py").write_text(
        f"""\
import os

from runtime import hookimpl


@hookimpl
def on_ready(bot):
    token = os.environ[{TOKEN_ENV!r}]
    bot.log.warning("the token is %s", token)
    raise RuntimeError(f"failed with the token {{token}} in hand")
""",
        encoding="utf-8",
    )
    record = tmp_path / "record.jsonl"
    config = write_config(
        tmp_path,
        api_base=discord.api_base,
        record=record,
        plugin_paths=[DROPIN, leaky],
        extra=f'[logging]\nformat = "{log_format}"\n',
    )
    async with start_bot(botrun(config), cwd=tmp_path) as bot:
        await wait_until_ready(discord, bot, record)
        await wait_for_log(bot, "failed with the token")
        assert await bot.terminate() == 0, bot.output
    assert_no_token(bot.output)
    if log_format == "json":
        entries = [json.loads(line) for line in bot.stderr.splitlines()]
        text = "\n".join(f"{e['message']}\n{e.get('exception', '')}" for e in entries)
    else:
        text = bot.stderr
    assert "the token is [token redacted]" in text
    assert "RuntimeError: failed with the token [token redacted] in hand" in text
    assert "'leaky': 1" in text  # the bot went on, and counted the failure


# ---------------------------------------------------------------------- failing early


BAD_CONFIGS = {
    "unknown key": (
        "[gateway]\nidentify_timeout = 5.0\nshardz = 2\n",
        ["gateway.shardz: unknown key", '"shards"'],
    ),
    "wrong type": ('[rest]\ntimeout = "fast"\n', ["rest.timeout: expected a number"]),
    "TOML syntax": ('[discord]\ntoken_env = "X"\napi_base = \n', ["line 3, column 12"]),
    "token pasted into token_env": (
        '[discord]\ntoken_env = "{token}"\n',
        ["discord.token_env: expected the name of an environment variable"],
    ),
    "token with a Bot prefix": ('[discord]\ntoken = "Bot {token}"\n', ["discord.token: "]),
    "token in a broken string": ('[discord]\ntoken = "{token}\n', ["line 2, column"]),
}


@pytest.mark.parametrize("command", ["run", "check", "plugins"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
async def test_bad_config_exits_78_naming_file_and_key_without_traceback(
    tmp_path: Path, case: str, command: str
) -> None:
    text, expected = BAD_CONFIGS[case]
    config = tmp_path / "bad.toml"
    config.write_text(text.replace("{token}", TOKEN), encoding="utf-8")
    done = await run_cli(botrun(command, config), cwd=tmp_path)
    assert done.returncode == EX_CONFIG, done.output
    assert done.stderr.startswith(f"botrun: config error: {config}: "), done.stderr
    for piece in expected:
        assert piece in done.stderr
    assert TRACEBACK not in done.output
    assert_no_token(done.output)


@pytest.mark.parametrize("command", ["run", "check"])
async def test_a_missing_spill_folder_exits_78_naming_key_and_folder(
    tmp_path: Path, command: str
) -> None:
    config = write_config(tmp_path, api_base="http://127.0.0.1:9/api/v10")
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[plugins]\n", '[plugins]\nspill_dir = "nowhere"\n'))
    done = await run_cli(botrun(command, config), cwd=tmp_path)
    assert done.returncode == EX_CONFIG, done.output
    assert f"plugins.spill_dir: {tmp_path / 'nowhere'} does not exist" in done.stderr
    assert TRACEBACK not in done.output


async def test_missing_token_variable_exits_78_naming_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, api_base="http://127.0.0.1:9/api/v10")
    env = bot_env()
    del env[TOKEN_ENV]
    done = await run_cli(botrun(config), cwd=tmp_path, env=env)
    assert done.returncode == EX_CONFIG, done.output
    assert f"discord.token_env: the environment variable {TOKEN_ENV} is not set" in done.stderr
    assert TRACEBACK not in done.output


async def test_token_rejected_over_rest_exits_1_saying_so_without_leaking_it(
    discord: FakeDiscord, tmp_path: Path
) -> None:
    discord.set_token("a-different-token-than-the-bots")
    config = write_config(tmp_path, api_base=discord.api_base)
    async with start_bot(botrun(config), cwd=tmp_path) as bot:
        status = await bot.wait(timeout=15)
    assert status == 1, bot.output
    assert "the bot token was rejected" in bot.stderr
    assert TRACEBACK not in bot.output
    assert_no_token(bot.output)
    assert not discord.entries("connect")  # it stopped at the 401 of /gateway/bot


async def test_token_rejected_by_the_gateway_stops_every_shard_at_once(tmp_path: Path) -> None:
    """A token reset while running: the first 4004 stops the bot, no shard identifies again."""
    async with FakeDiscord(
        token=TOKEN, shards=2, heartbeat_interval=0.5, identify_window=0.5, guilds_per_shard=1
    ) as discord:
        record = tmp_path / "record.jsonl"
        config = write_config(tmp_path, api_base=discord.api_base, record=record)
        async with start_bot(botrun(config), cwd=tmp_path) as bot:
            await wait_until_ready(discord, bot, record)
            first = discord.entries("ready")[0].shard_id  # either shard may identify first
            assert first is not None
            discord.set_token("the-reset-token")
            await discord.close_shard(first, 4004, "Authentication failed.")
            # Shard 1 would identify 5 s (identify_timeout) after shard 0.
            assert await bot.wait(timeout=4.0) == 1, bot.output
    assert len(discord.entries("identify")) == 1
    assert "the bot token was rejected" in bot.stderr
    assert "shutting down" in bot.stderr
    assert TRACEBACK not in bot.output
    assert_no_token(bot.output)


async def test_disallowed_intents_stop_the_bot_at_once_with_exit_1(tmp_path: Path) -> None:
    """4014 would close every shard alike: the first one stops the bot."""
    async with FakeDiscord(
        token=TOKEN, shards=2, identify_window=0.5, privileged_intents_allowed=False
    ) as discord:
        config = write_config(tmp_path, api_base=discord.api_base)  # asks for MESSAGE_CONTENT
        async with start_bot(botrun(config), cwd=tmp_path) as bot:
            await discord.wait_for("server_close", timeout=STARTUP_TIMEOUT)
            # Shard 1 would identify 5 s (identify_timeout) after shard 0.
            assert await bot.wait(timeout=4.0) == 1, bot.output
    assert [e.detail["code"] for e in discord.entries("server_close")] == [4014]
    assert len(discord.entries("identify")) == 1
    assert "code 4014: disallowed intents" in bot.stderr
    assert "shutting down" in bot.stderr
    assert TRACEBACK not in bot.output
    assert_no_token(bot.output)


# ---------------------------------------------------------------------- check, plugins, help


async def test_check_prints_the_summary_and_exits_0(discord: FakeDiscord, tmp_path: Path) -> None:
    config = write_config(tmp_path, api_base=discord.api_base)
    done = await run_cli(botrun("check", config), cwd=tmp_path)
    assert done.returncode == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == f"config: {config} is valid"
    assert "shards: auto" in lines
    assert "emulator: off" in lines
    assert "plugins: 3 loaded, 0 failed, 0 disabled" in lines
    assert (
        "  recorder [drop-in, loaded]: on_message_create, on_ready, on_shutdown, on_startup"
        in lines
    )
    assert "  ping [bundled, loaded]: on_message_create" in lines
    assert done.stderr == ""
    assert not discord.timeline  # check never connects
    assert_no_token(done.output)


async def test_check_fails_on_a_misspelled_hook_naming_plugin_and_hook(tmp_path: Path) -> None:
    broken = tmp_path / "broken_plugins"
    broken.mkdir()
    (broken / "typo.py").write_text(
        "from runtime import hookimpl\n\n@hookimpl\ndef on_mesage_create(data): ...\n",
        encoding="utf-8",
    )
    config = write_config(
        tmp_path, api_base="http://127.0.0.1:9/api/v10", plugin_paths=[DROPIN, broken]
    )
    done = await run_cli(botrun("check", config), cwd=tmp_path)
    assert done.returncode == EX_CONFIG, done.output
    assert done.stderr.startswith("botrun: plugin error: "), done.stderr
    assert "'typo'" in done.stderr
    assert "'on_mesage_create'" in done.stderr
    assert "did you mean 'on_message_create'?" in done.stderr
    assert TRACEBACK not in done.output
    assert_no_token(done.output)

    # 'plugins' lists it as failed, for the same reason, and the others as loaded.
    done = await run_cli(botrun("plugins", config, "--json"), cwd=tmp_path)
    assert done.returncode == 0, done.output
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert not rows["typo"]["loaded"]
    assert "did you mean 'on_message_create'?" in rows["typo"]["error"]
    assert rows["recorder"]["loaded"]


async def test_plugins_json_lists_every_plugin_with_source_and_hooks(tmp_path: Path) -> None:
    config = write_config(tmp_path, api_base="http://127.0.0.1:9/api/v10")
    done = await run_cli(botrun("plugins", config, "--json"), cwd=tmp_path)
    assert done.returncode == 0, done.output
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["ping"]["source"] == "bundled"
    assert rows["ping"]["hooks"] == ["on_message_create"]
    assert rows["event_logger"]["source"] == "bundled"
    assert "on_ready" in rows["event_logger"]["hooks"]
    recorder = rows["recorder"]
    assert recorder["source"] == "drop-in"
    assert recorder["origin"] == str(DROPIN / "recorder.py")
    assert recorder["version"] == "0.0.1"
    assert recorder["hooks"] == ["on_message_create", "on_ready", "on_shutdown", "on_startup"]
    assert all(row["loaded"] and row["error"] is None for row in rows.values())


async def test_version_prints_the_package_version(tmp_path: Path) -> None:
    done = await run_cli(botrun("--version"), cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"botrun {__version__}"


async def test_help_lists_every_command_and_option(tmp_path: Path) -> None:
    done = await run_cli(botrun("--help"), cwd=tmp_path)
    assert done.returncode == 0, done.output
    for word in ("run", "check", "plugins", "--backend", "--log-level", "--json", "--version"):
        assert word in done.stdout, f"{word} missing from botrun --help:\n{done.stdout}"


async def test_no_command_prints_help_and_exits_2(tmp_path: Path) -> None:
    done = await run_cli(botrun(), cwd=tmp_path, env=bot_env())
    assert done.returncode == 2
    assert "usage: botrun" in done.stdout
