"""botrun's config file: loading, defaults, every error a user can make, the token."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.config import (
    ActivityConfig,
    Config,
    Secret,
    is_loopback,
    load_config,
    resolve_token,
)
from runtime.errors import EX_CONFIG, ConfigError
from sharder._constants import Intents

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.s3cr3t-t0k3n-v4lu3"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def error(tmp_path: Path, text: str, **kwargs: Any) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    assert info.value.file == str(path)
    return info.value


# ---------------------------------------------------------------------------
# Loading


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config == Config(path=tmp_path / "config.toml")
    assert config.discord.token_env == "DISCORD_TOKEN"
    assert config.discord.token is None
    assert config.resolved_intents == Intents.GUILDS | Intents.GUILD_MESSAGES
    assert config.gateway.shards == "auto"
    assert config.plugins.settings == {}
    assert config.sessions.file is None
    assert config.emulator.enabled is False


def test_the_example_config_loads_and_runs_offline() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.path == EXAMPLE
    assert config.emulator.enabled
    assert resolve_token(config, {}) is None
    assert config.plugins.settings["ping"] == {"prefix": "!ping"}
    assert config.plugins.paths == ()
    assert config.sessions.file == REPO / "botrun-sessions.json"


def _keys(cls: type[Any], prefix: str = "") -> Iterator[str]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal") or f.metadata.get("rest"):
            continue
        yield prefix + f.name
        for arg in (hints[f.name], *typing.get_args(hints[f.name])):
            inner = typing.get_args(arg)[0] if typing.get_origin(arg) is tuple else arg
            if dataclasses.is_dataclass(inner) and isinstance(inner, type):
                yield from _keys(inner, prefix + f.name + ".")


KEYS = sorted(_keys(Config))


@pytest.mark.parametrize("key", KEYS)
def test_the_example_config_documents_every_key(key: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    name = key.rsplit(".", 1)[-1]
    # A table has its header; a key is shown as "key = ..." (maybe commented
    # out) or, inside an array of tables, named in a comment.
    pattern = rf"^\[{re.escape(key)}\]|^(# )?{name} = |^#.*\b{name}\b"
    assert re.search(pattern, text, re.MULTILINE), key


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "bot.toml"
    path.write_text(
        '[plugins]\npaths = ["plugins.d", "../shared", "/opt/plugins"]\nspill_dir = "spill"\n'
        '[sessions]\nfile = "state/sessions.json"\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/bot.toml")
    assert config.path == path
    assert config.plugins.paths == (
        tmp_path / "etc" / "plugins.d",
        tmp_path / "shared",
        Path("/opt/plugins"),
    )
    assert config.sessions.file == tmp_path / "etc" / "state" / "sessions.json"
    assert config.plugins.spill_dir == tmp_path / "etc" / "spill"


def test_an_empty_session_file_turns_persistence_off(tmp_path: Path) -> None:
    assert load(tmp_path, '[sessions]\nfile = ""\n').sessions.file is None


def test_plugin_tables_become_that_plugins_raw_settings(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[plugins]\nenabled = ["ping"]\n[plugins.ping]\nprefix = "!p"\n'
        "[plugins.event-logger]\nlevels = [1, 2]\nnested = { a = 1 }\n",
    )
    assert config.plugins.enabled == ("ping",)
    assert config.plugins.settings == {
        "ping": {"prefix": "!p"},
        "event-logger": {"levels": [1, 2], "nested": {"a": 1}},
    }


def test_intents_may_be_names_old_aliases_or_a_bitfield(tmp_path: Path) -> None:
    config = load(tmp_path, '[discord]\nintents = ["GUILDS", "GUILD_BANS"]\n')
    assert config.resolved_intents == Intents.GUILDS | Intents.GUILD_MODERATION
    assert load(tmp_path, "[discord]\nintents = 53608447\n").resolved_intents == Intents.all()
    assert load(tmp_path, "[discord]\nintents = []\n").resolved_intents == 0


def test_logging_level_is_case_insensitive(tmp_path: Path) -> None:
    assert load(tmp_path, '[logging]\nlevel = "debug"\n').logging.level == "DEBUG"


def test_a_split_bot_runs_the_given_shard_ids(tmp_path: Path) -> None:
    config = load(tmp_path, "[gateway]\nids = [2, 3]\ntotal = 4\n")
    assert config.gateway.shard_plan(recommended=1) == ((2, 3), 4)
    assert load(tmp_path, "[gateway]\nshards = 2\n").gateway.shard_plan(5) == ((0, 1), 2)
    assert load(tmp_path, "").gateway.shard_plan(3) == ((0, 1, 2), 3)


def test_presence_becomes_the_identify_payload(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[gateway.presence]\nstatus = "idle"\n'
        'activities = [{ name = "tests", type = 3 }, '
        '{ name = "s", type = 1, url = "https://twitch.tv/x", state = "live" }]\n',
    )
    assert config.gateway.presence is not None
    assert config.gateway.presence.activities[0] == ActivityConfig(name="tests", type=3)
    assert config.gateway.presence.as_payload() == {
        "since": None,
        "activities": [
            {"name": "tests", "type": 3},
            {"name": "s", "type": 1, "state": "live", "url": "https://twitch.tv/x"},
        ],
        "status": "idle",
        "afk": False,
    }


def test_an_http_api_base_is_allowed_to_loopback_or_when_insecure_transport_is_allowed(
    tmp_path: Path,
) -> None:
    local = load(tmp_path, '[discord]\napi_base = "http://127.0.0.1:8080/api/"\n')
    assert local.discord.api_base == "http://127.0.0.1:8080/api"
    remote = load(
        tmp_path,
        '[discord]\napi_base = "http://proxy.lan/api"\nallow_insecure_transport = true\n',
    )
    assert remote.discord.api_base == "http://proxy.lan/api"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.2", True),
        ("[::1]", True),
        ("a.localhost", True),
        ("discord.com", False),
        ("10.0.0.1", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


# ---------------------------------------------------------------------------
# Errors name the file, the key and the expectation


def test_a_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    err = error(tmp_path, '[discord]\ntoken_env = "X"\nintents = [GUILDS]\n')
    assert (err.key, err.line, err.column) == ("", 3, 12)
    assert str(err) == f"{tmp_path / 'config.toml'}: line 3, column 12: Invalid value"


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load_config(tmp_path / "nope.toml")


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[discord]\ntoken_env = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.line, info.value.message) == (2, "not valid UTF-8 text")


def test_too_deeply_nested_arrays_are_a_config_error(tmp_path: Path) -> None:
    err = error(tmp_path, "[plugins.x]\na = " + "[" * 1000 + "]" * 1000 + "\n")
    assert "nested too deeply" in err.message


def test_an_intent_typo_gets_a_suggestion(tmp_path: Path) -> None:
    err = error(tmp_path, '[discord]\nintents = ["GUILDS", "GUILD_MESSAGES", "GUILD_MESAGES"]\n')
    assert str(err) == (
        f"{tmp_path / 'config.toml'}: discord.intents[2]: "
        'unknown intent "GUILD_MESAGES" (did you mean "GUILD_MESSAGES"?)'
    )


def test_a_lower_case_intent_suggests_the_upper_case_name(tmp_path: Path) -> None:
    err = error(tmp_path, '[discord]\nintents = ["guilds"]\n')
    assert err.message == 'unknown intent "guilds" (did you mean "GUILDS"?)'


def test_an_unknown_key_gets_a_suggestion(tmp_path: Path) -> None:
    err = error(tmp_path, '[gateway]\ncompresion = "none"\n')
    assert (err.key, err.message) == (
        "gateway.compresion",
        'unknown key (did you mean "compression"?)',
    )
    err = error(tmp_path, "[plugin]\n")
    assert (err.key, err.message) == ("plugin", 'unknown key (did you mean "plugins"?)')


SHARDS_MESSAGE = 'expected "auto" or a positive integer, got -3'


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[gateway]\nshards = -3", "gateway.shards", SHARDS_MESSAGE),
        ("[gateway]\nshards = true", "gateway.shards", 'expected "auto" or an integer, got true'),
        ('[gateway]\ncompression = "zlib"', "gateway.compression", 'got "zlib"'),
        ('[gateway]\nencoding = "etf"', "gateway.encoding", 'expected "json", got "etf"'),
        ("[gateway]\nlarge_threshold = 251", "gateway.large_threshold", "from 50 to 250"),
        ("[gateway]\nidentify_timeout = 4.9", "gateway.identify_timeout", ">= 5.0, got 4.9"),
        ("[gateway]\nversion = 8", "gateway.version", "expected 9 or 10, got 8"),
        ("[gateway]\nids = [0]", "gateway.ids", "ids needs total"),
        ("[gateway]\ntotal = 2", "gateway.total", "total needs ids"),
        ("[gateway]\nids = []\ntotal = 2", "gateway.ids", "expected at least one shard id"),
        ("[gateway]\nids = [0, 4]\ntotal = 4", "gateway.ids[1]", "not below total 4"),
        ("[gateway]\nids = [1, 1]\ntotal = 4", "gateway.ids[1]", "listed twice"),
        ("[gateway]\nids = [-1]\ntotal = 4", "gateway.ids[0]", "expected a shard id >= 0"),
        ("[gateway]\nshards = 2\nids = [0]\ntotal = 2", "gateway.shards", 'leave shards "auto"'),
        ('[gateway.presence]\nstatus = "away"', "gateway.presence.status", 'got "away"'),
        (
            '[gateway.presence]\nactivities = [{ name = "x" }]',
            "gateway.presence.activities[0].type",
            "missing (expected an integer)",
        ),
        (
            '[gateway.presence]\nactivities = [{ name = "x", type = 7 }]',
            "gateway.presence.activities[0].type",
            "expected an activity type from 0 to 6, got 7",
        ),
        ('[discord]\napi_base = "discord.com"', "discord.api_base", "http:// or https:// URL"),
        ('[discord]\napi_base = "http://[::1"', "discord.api_base", "http:// or https:// URL"),
        ('[discord]\napi_base = "https://x:99999"', "discord.api_base", "https:// URL"),
        ('[discord]\napi_base = "http://discord.com"', "discord.api_base", "plain http"),
        ("[discord]\nintents = -1", "discord.intents", "non-negative intents bitfield"),
        ("[discord]\nintents = 131072", "discord.intents", "undefined: 0x20000"),
        ('[discord]\nintents = "GUILDS"', "discord.intents", "array of strings or an integer"),
        ("[plugins]\nstrikt = true", "plugins.strikt", 'did you mean "strict"?'),
        ('[plugins]\nenabled = ["a b"]', "plugins.enabled[0]", "expected a plugin name"),
        ('[plugins."a b"]\nx = 1', 'plugins."a b"', "named after the plugin"),
        (
            '[plugins]\nenabled = ["x"]\ndisabled = ["y", "x"]',
            "plugins.disabled[1]",
            'plugin "x" is both enabled and disabled',
        ),
        ("[plugins]\nbacklog = 0", "plugins.backlog", "expected an integer >= 1, got 0"),
        ('[plugins]\noverflow = "drop-oldest"', "plugins.overflow", 'did you mean "drop_oldest"?'),
        ("[plugins]\nspill_limit = -1", "plugins.spill_limit", "MiB from 0 to 1048576, got -1"),
        ("[plugins]\nshutdown_grace = 0", "plugins.shutdown_grace", "> 0, got 0"),
        ("[plugins]\nslow_handler_warning = -1.0", "plugins.slow_handler_warning", "got -1.0"),
        ("[plugins]\npaths = [1]", "plugins.paths[0]", "expected a path, got 1"),
        ("[sessions]\nsave_interval = nan", "sessions.save_interval", "got nan"),
        ("[rest]\ntimeout = 0", "rest.timeout", "> 0"),
        ("[rest]\nmax_retries = -1", "rest.max_retries", ">= 0"),
        ("[rest]\nglobal_limit = 0.5", "rest.global_limit", "expected an integer, got 0.5"),
        ('[logging]\nlevel = "warn"', "logging.level", 'got "warn" (did you mean "WARNING"?)'),
        ('[logging]\nformat = "xml"', "logging.format", 'expected "text" or "json"'),
        ("[emulator]\nport = 70000", "emulator.port", "a port from 0 to 65535, got 70000"),
        ("[emulator]\nenabled = 1", "emulator.enabled", "expected true or false, got 1"),
        ("[emulator]\nchatter_interval = -1", "emulator.chatter_interval", ">= 0"),
        ("discord = 3", "discord", "expected a table, got 3"),
        ("version = 10", "version", "unknown key"),
        ("path = 'x'", "path", "unknown key"),
    ],
)
def test_a_wrong_value_names_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    err = error(tmp_path, text + "\n")
    assert err.key == key
    assert message in err.message
    assert str(err).startswith(f"{tmp_path / 'config.toml'}: {key}: ")


def test_config_error_exit_status_is_ex_config() -> None:
    assert EX_CONFIG == 78


# ---------------------------------------------------------------------------
# The token


def test_the_token_comes_from_the_environment_variable(tmp_path: Path) -> None:
    config = load(tmp_path, '[discord]\ntoken_env = "MY_BOT_TOKEN"\n')
    assert resolve_token(config, {"MY_BOT_TOKEN": f" {TOKEN}\n"}) == TOKEN


def test_a_missing_token_says_which_variable_to_set(tmp_path: Path) -> None:
    config = load(tmp_path, '[discord]\ntoken_env = "MY_BOT_TOKEN"\n')
    with pytest.raises(ConfigError) as info:
        resolve_token(config, {"MY_BOT_TOKEN": ""})
    assert info.value.key == "discord.token_env"
    assert "MY_BOT_TOKEN is not set" in str(info.value)


def test_load_config_with_environ_checks_the_token_early(tmp_path: Path) -> None:
    err = error(tmp_path, "", environ={})
    assert err.key == "discord.token_env"
    assert load_config(write(tmp_path, ""), environ={"DISCORD_TOKEN": TOKEN})


def test_the_emulator_needs_no_token(tmp_path: Path) -> None:
    config = load(tmp_path, "[emulator]\nenabled = true\n")
    assert resolve_token(config, {}) is None
    assert resolve_token(config, {"DISCORD_TOKEN": TOKEN}) == TOKEN


def test_a_literal_token_wins_and_never_shows(tmp_path: Path) -> None:
    config = load(tmp_path, f'[discord]\ntoken = "{TOKEN}"\n')
    assert resolve_token(config, {"DISCORD_TOKEN": "other"}) == TOKEN
    assert TOKEN not in repr(config)
    assert TOKEN not in str(config)
    assert TOKEN not in repr(config.discord.token)
    assert TOKEN not in repr(resolve_token(config, {}))
    assert isinstance(config.discord.token, Secret)


def test_setting_both_token_and_token_env_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, f'[discord]\ntoken_env = "X"\ntoken = "{TOKEN}"\n')
    assert (err.key, err.message) == ("discord.token", "set either token or token_env, not both")
    assert TOKEN not in str(err)


@pytest.mark.parametrize(
    "text",
    [
        f'[discord]\ntoken = "{TOKEN} "',
        f'[discord]\ntoken = "Bot {TOKEN}"',
        f'[discord]\ntoken = "{TOKEN}"\nintents = ["NOPE"]',
        f'[discord]\ntoken = "{TOKEN}"\n[gateway]\nshards = 0',
        f'[discord]\ntoken = "{TOKEN}"\ntokn = "{TOKEN}"',
        f'[discord]\ntoken_env = "{TOKEN}"',
        f"[discord]\ntoken = ['{TOKEN}']",
        f'[discord]\ntoken = "{TOKEN}\n',
        f'[discord]\ntoken = "{TOKEN}"\n[discord]',
    ],
)
def test_a_literal_token_never_appears_in_an_error(tmp_path: Path, text: str) -> None:
    err = error(tmp_path, text + "\n")
    assert TOKEN not in str(err)
    assert TOKEN not in repr(err)


def test_an_empty_literal_token_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, '[discord]\ntoken = ""\n')
    assert err.key == "discord.token"


# ---------------------------------------------------------------------------
# Properties: whatever the file holds, a Config or a ConfigError


def _toml_key(key: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return key
    return _toml_string(key)


def _toml_string(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def to_toml_value(value: Any) -> str:
    """A minimal TOML serializer: everything inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(to_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_key(k)} = {to_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(value)


def to_toml(document: dict[str, Any]) -> str:
    return "".join(f"{_toml_key(k)} = {to_toml_value(v)}\n" for k, v in document.items())


def test_the_tiny_serializer_round_trips() -> None:
    import tomli

    document = {
        "a b": {"x": [1, 2.5, 'q"\\\x7f\n'], "y": {"z": True}},
        "t": datetime.datetime(2024, 1, 2, 3, 4, 5),
    }
    assert tomli.loads(to_toml(document)) == document


texts = st.text(st.characters(codec="utf-8"), max_size=12)
toml_scalars = st.one_of(
    texts,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)
# Values near the valid ones, so that checks past the type are reached too.
near_values = st.one_of(
    st.sampled_from(["auto", "json", "zlib-stream", "none", "wait", "info", "dnd", ""]),
    st.sampled_from(["DISCORD_TOKEN", "GUILDS", "http://localhost", "https://x.y/api", "p.d"]),
    st.integers(-2, 300),
    st.floats(-1, 300),
    st.lists(st.sampled_from(["GUILDS", "GUILD_MESAGES", "ping", "x y", 0, 1, 5]), max_size=3),
    st.lists(
        st.fixed_dictionaries(
            {"name": texts}, optional={"type": st.integers(-1, 7), "url": toml_values}
        ),
        max_size=2,
    ),
)


def _nest(paths: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for path, value in copy.deepcopy(paths).items():
        *tables, name = path.split(".")
        table = document
        for part in tables:
            inner = table.setdefault(part, {})
            if not isinstance(inner, dict):
                break
            table = inner
        else:
            table.setdefault(name, value)
    return document


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hypothesis") / "config.toml"


def check_load(path: Path) -> None:
    try:
        config = load_config(path, environ={})
    except ConfigError as err:
        failure: ConfigError | None = err
    else:
        failure = None
        assert isinstance(config, Config)
        assert isinstance(config.resolved_intents, int)
    assert failure is None or str(failure).startswith(str(path))


@settings(max_examples=300, database=None, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*KEYS, "plugins.ping.prefix", "plugins.x", "discord.tokn", "extra"]),
        toml_values | near_values,
    )
)
def test_random_values_for_every_key_give_a_config_or_a_config_error(
    config_file: Path, paths: dict[str, Any]
) -> None:
    config_file.write_text(to_toml(_nest(paths)), encoding="utf-8")
    check_load(config_file)


@settings(max_examples=200, database=None, deadline=None)
@given(st.dictionaries(texts, toml_values, max_size=5))
def test_random_documents_give_a_config_or_a_config_error(
    config_file: Path, document: dict[str, Any]
) -> None:
    config_file.write_text(to_toml(document), encoding="utf-8")
    check_load(config_file)


@settings(max_examples=200, database=None, deadline=None)
@given(st.binary(max_size=200) | texts.map(str.encode))
def test_random_bytes_give_a_config_or_a_config_error(config_file: Path, data: bytes) -> None:
    config_file.write_bytes(data)
    check_load(config_file)
