"""The generic table validator: every annotation, every error and its key path."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime._schema import InvalidValue, build, describe_value, join_key, suggest
from runtime.errors import ConfigError

FILE = "/srv/bot/config.toml"


def _even(value: int) -> int:
    if value % 2:
        raise ValueError("expected an even number")
    return value


def _names(value: tuple[str, ...]) -> tuple[str, ...]:
    for index, name in enumerate(value):
        if not name.islower():
            raise InvalidValue(f"name {name!r} is not lower case", key=f"[{index}]")
    return value


@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int = 0


@dataclass(frozen=True, slots=True)
class Range:
    low: int = 0
    high: int = 10

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise InvalidValue(f"high must be >= low ({self.low})", key="high")


@dataclass(frozen=True, slots=True)
class Everything:
    name: str
    count: int = 1
    ratio: float = 1.0
    flag: bool = False
    mode: Literal["fast", "slow"] = "fast"
    level: Literal[1, 2] = 1
    maybe: int | None = None
    either: Literal["auto"] | int = "auto"
    tags: list[str] = field(default_factory=list)
    points: tuple[Point, ...] = ()
    pair: tuple[int, str] = (0, "")
    weights: dict[str, float] = field(default_factory=dict)
    origin: Point = field(default_factory=lambda: Point(x=0))
    home: Path | None = None
    anything: Any = None
    even: int = field(default=0, metadata={"check": _even, "help": "an even number"})
    names: tuple[str, ...] = field(default=(), metadata={"check": _names})
    password: str = field(default="", metadata={"secret": True})
    user: str = field(default="", metadata={"conflicts": ("password",)})


@dataclass(frozen=True, slots=True)
class Section:
    limit: int = 1
    extra: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={"rest": True})


@dataclass(frozen=True, slots=True)
class Empty:
    pass


def error(cls: type[Any], data: dict[str, Any], *, path: str = "") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(cls, data, path=path, file=FILE)
    return info.value


# ---------------------------------------------------------------------------
# Conversion


def test_values_of_every_supported_annotation_are_converted() -> None:
    result = build(
        Everything,
        {
            "name": "n",
            "count": 3,
            "ratio": 2,
            "flag": True,
            "mode": "slow",
            "level": 2,
            "maybe": 5,
            "either": 4,
            "tags": ["a", "b"],
            "points": [{"x": 1}, {"x": 2, "y": 3}],
            "pair": [1, "one"],
            "weights": {"a": 1, "b": 0.5},
            "origin": {"x": 9},
            "home": "data",
            "anything": [datetime.date(2024, 1, 1)],
            "even": 4,
            "names": ["ab"],
        },
        path="",
        file=FILE,
    )
    assert result == Everything(
        name="n",
        count=3,
        ratio=2.0,
        flag=True,
        mode="slow",
        level=2,
        maybe=5,
        either=4,
        tags=["a", "b"],
        points=(Point(1), Point(2, 3)),
        pair=(1, "one"),
        weights={"a": 1.0, "b": 0.5},
        origin=Point(9),
        home=Path("/srv/bot/data"),
        anything=[datetime.date(2024, 1, 1)],
        even=4,
        names=("ab",),
    )
    assert isinstance(result.ratio, float)


def test_missing_optional_keys_take_their_defaults() -> None:
    assert build(Everything, {"name": "n"}, path="", file=FILE) == Everything(name="n")


def test_relative_paths_resolve_against_the_config_files_directory(tmp_path: Path) -> None:
    result = build(Everything, {"name": "n", "home": "../x"}, path="", file=tmp_path / "c.toml")
    assert result.home == tmp_path.parent / "x"
    absolute = build(Everything, {"name": "n", "home": "/abs"}, path="", file=tmp_path / "c.toml")
    assert absolute.home == Path("/abs")


def test_an_empty_string_means_none_for_an_optional_path() -> None:
    assert build(Everything, {"name": "n", "home": ""}, path="", file=FILE).home is None


def test_rest_field_collects_unknown_tables() -> None:
    result = build(Section, {"limit": 2, "ping": {"prefix": "!"}}, path="plugins", file=FILE)
    assert result == Section(limit=2, extra={"ping": {"prefix": "!"}})


# ---------------------------------------------------------------------------
# Errors: file, key path, expectation


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        ({"name": 1}, "name", "expected a string, got 1"),
        ({"name": "n", "count": True}, "count", "expected an integer, got true"),
        ({"name": "n", "count": 1.5}, "count", "expected an integer, got 1.5"),
        ({"name": "n", "count": 2**64}, "count", "expected an integer that fits in 64 bits"),
        ({"name": "n", "ratio": "1"}, "ratio", 'expected a number, got "1"'),
        ({"name": "n", "ratio": math.nan}, "ratio", "expected a number, got nan"),
        ({"name": "n", "flag": 1}, "flag", "expected true or false, got 1"),
        ({"name": "n", "level": True}, "level", "expected 1 or 2, got true"),
        ({"name": "n", "level": 1.0}, "level", "expected 1 or 2, got 1.0"),
        ({"name": "n", "either": "x"}, "either", 'expected "auto" or an integer, got "x"'),
        ({"name": "n", "tags": "a"}, "tags", 'expected an array of strings, got "a"'),
        ({"name": "n", "tags": ["a", 2]}, "tags[1]", "expected a string, got 2"),
        ({"name": "n", "pair": [1]}, "pair", "expected an array of 2 items, got an array"),
        ({"name": "n", "weights": {"a": "b"}}, "weights.a", 'expected a number, got "b"'),
        ({"name": "n", "weights": {"a b": []}}, 'weights."a b"', "expected a number, got an array"),
        ({"name": "n", "origin": 3}, "origin", "expected a table, got 3"),
        ({"name": "n", "origin": {}}, "origin.x", "missing (expected an integer)"),
        (
            {"name": "n", "points": [{"x": 1}, {"x": "2"}]},
            "points[1].x",
            'expected an integer, got "2"',
        ),
        ({"name": "n", "home": 5}, "home", "expected a path, got 5"),
        ({"name": "n", "home": "a\0b"}, "home", 'expected a path, got "a\\u0000b"'),
        ({}, "name", "missing (expected a string)"),
        ({"name": "n", "maybe": datetime.time(1, 2)}, "maybe", "expected an integer, got a time"),
    ],
)
def test_a_wrong_value_names_file_key_and_expectation(
    data: dict[str, Any], key: str, message: str
) -> None:
    err = error(Everything, data, path="section")
    assert (err.file, err.key, err.message) == (FILE, f"section.{key}", message)
    assert str(err) == f"{FILE}: section.{key}: {message}"


def test_a_literal_typo_gets_a_suggestion() -> None:
    err = error(Everything, {"name": "n", "mode": "fsat"})
    assert err.message == 'expected "fast" or "slow", got "fsat" (did you mean "fast"?)'


def test_an_unknown_key_gets_a_suggestion() -> None:
    err = error(Everything, {"name": "n", "cuont": 1})
    assert str(err) == f'{FILE}: cuont: unknown key (did you mean "count"?)'


def test_an_unknown_key_without_a_close_match_lists_the_valid_keys() -> None:
    err = error(Point, {"x": 1, "zzz": 2}, path="p")
    assert (err.key, err.message) == ("p.zzz", "unknown key (expected one of x, y)")
    assert error(Empty, {"a": 1}).message == "unknown key (this table takes no keys)"


def test_a_non_table_unknown_key_next_to_a_rest_field_is_still_an_error() -> None:
    err = error(Section, {"limti": 2}, path="plugins")
    assert (err.key, err.message) == ("plugins.limti", 'unknown key (did you mean "limit"?)')
    err = error(Section, {"zzz": 2}, path="plugins")
    assert err.message == "unknown key (expected one of limit, or a [plugins.NAME] table)"


def test_a_check_message_starting_with_expected_gets_the_value_appended() -> None:
    err = error(Everything, {"name": "n", "even": 3})
    assert (err.key, err.message) == ("even", "expected an even number, got 3")


def test_an_invalid_value_from_a_check_names_the_item() -> None:
    err = error(Everything, {"name": "n", "names": ["ok", "Bad"]})
    assert (err.key, err.message) == ("names[1]", "name 'Bad' is not lower case")


def test_a_post_init_error_is_reported_at_the_key_it_names() -> None:
    err = error(Range, {"low": 5, "high": 1}, path="range")
    assert (err.key, err.message) == ("range.high", "high must be >= low (5)")


def test_conflicting_keys_are_an_error() -> None:
    err = error(Everything, {"name": "n", "user": "u", "password": "p"})
    assert (err.key, err.message) == ("user", "set either user or password, not both")


def test_a_secret_value_is_never_echoed() -> None:
    err = error(Everything, {"name": "n", "password": 123456789})
    assert err.message == "expected a string"
    assert "123456789" not in str(err)


def test_a_union_reports_the_arm_that_matched_the_shape() -> None:
    @dataclass(frozen=True)
    class Intents:
        value: tuple[str, ...] | int

    err = error(Intents, {"value": ["a", 1]})
    assert (err.key, err.message) == ("value[1]", "expected a string, got 1")


def test_non_string_keys_from_python_callers_are_an_error() -> None:
    err = error(Everything, {"name": "n", 1: 2})  # type: ignore[dict-item]
    assert err.message == "expected string keys, got 1"


def test_a_non_table_document_is_an_error() -> None:
    err = error(Everything, [1, 2])  # type: ignore[arg-type]
    assert (err.key, err.message) == ("", "expected a table, got an array")


# ---------------------------------------------------------------------------
# Schema errors are the author's


def test_an_unsupported_annotation_is_a_type_error_whatever_the_data() -> None:
    @dataclass
    class Bad:
        when: datetime.datetime

    with pytest.raises(TypeError, match="unsupported annotation"):
        build(Bad, {}, path="", file=FILE)


def test_a_class_that_is_not_a_dataclass_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expected a dataclass"):
        build(int, {}, path="", file=FILE)


# ---------------------------------------------------------------------------
# Helpers


def test_suggest_prefers_a_case_only_difference_then_close_matches() -> None:
    assert suggest("guilds", ["GUILDS", "GUILD_MEMBERS"]) == "GUILDS"
    assert suggest("GUILD_MEMBRES", ["GUILDS", "GUILD_MEMBERS"]) == "GUILD_MEMBERS"
    assert suggest("xyz", ["GUILDS"]) is None


def test_join_key_quotes_keys_that_are_not_bare() -> None:
    assert join_key("", "a") == "a"
    assert join_key("plugins", "my-plugin_2") == "plugins.my-plugin_2"
    assert join_key("plugins", "my plugin") == 'plugins."my plugin"'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "nothing"),
        (True, "true"),
        (-3, "-3"),
        (2**70, "an integer out of range"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        ("x" * 50, '"' + "x" * 40 + '..."'),
        ([1], "an array"),
        ({}, "a table"),
        (datetime.datetime(2024, 1, 1), "a date-time"),
        (datetime.date(2024, 1, 1), "a date"),
        (b"x", "a bytes"),
    ],
)
def test_describe_value_renders_values_like_toml(value: object, text: str) -> None:
    assert describe_value(value) == text


# ---------------------------------------------------------------------------
# Properties


toml_scalars = st.one_of(
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
near_values = st.one_of(
    st.sampled_from(["n", "fast", "slow", "auto", "", "data", 0, 1, 2, -1, 3, 0.5]),
    st.lists(st.sampled_from(["a", "B", 1]), max_size=3),
    st.lists(st.fixed_dictionaries({"x": st.integers(-2, 2)}), max_size=2),
    st.fixed_dictionaries({"x": st.integers(-2, 2)}, optional={"y": toml_values}),
)
field_names = [*Everything.__dataclass_fields__, "unknown"]


@settings(max_examples=300, database=None, deadline=None)
@given(st.dictionaries(st.sampled_from(field_names), toml_values | near_values))
def test_any_data_gives_an_instance_or_a_config_error(data: dict[str, Any]) -> None:
    try:
        result = build(Everything, data, path="t", file=FILE)
    except ConfigError as err:
        failure: ConfigError | None = err
    else:
        failure = None
        assert isinstance(result, Everything)
    assert failure is None or str(failure).startswith(f"{FILE}: t")
