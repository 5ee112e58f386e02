"""Turn TOML tables into frozen dataclasses, with errors a user can act on.

One validator serves botrun's own config and every plugin's ``Settings``
class, so both report mistakes the same way::

    config.toml: discord.intents[2]: unknown intent "GUILD_MESAGES" (did you mean ...?)

:func:`build` checks a table against the field annotations of a dataclass.
Supported annotations: ``str``, ``int`` (64-bit, never a bool), ``float``
(an int is accepted, nan is not), ``bool``, ``Path`` (relative to the config
file's directory), ``Literal[...]``, unions such as ``X | None``, ``list[X]``,
``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[str, X]``, nested dataclasses
(tables) and ``Any`` (kept as parsed). TOML has no null, so ``None`` comes
from a field's default; in ``Path | None`` the empty string also means None.

A field with a default is optional. Field metadata adds what annotations
cannot say:

``check``
    ``callable(value) -> value`` run on the converted value (never on None).
    It returns the value to store, or raises ``ValueError``. A message that
    starts with "expected" gets ", got <the value>" appended; an
    :class:`InvalidValue` message is used as is, at the key it names.
``help``
    One line for documentation; the validator ignores it.
``secret``
    Never echo the value in an error (the bot token).
``conflicts``
    Names of sibling keys that may not be set together with this one.
``rest``
    On one ``dict[str, X]`` field: collects every unknown key whose value is
    a table (``[plugins.<name>]``); unknown keys with other values stay errors.
``internal``
    Not read from the table; set by code.

Cross-field rules go in ``__post_init__``, raising ``ValueError`` or
:class:`InvalidValue`. Whatever the data, only ``ConfigError`` escapes
:func:`build`; a ``TypeError`` means the dataclass itself is unsupported.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import math
import os
import re
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from runtime.errors import ConfigError

__all__ = ["InvalidValue", "build", "describe_value", "join_key", "suggest"]

T = TypeVar("T")

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+\Z")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_SCALAR_NAMES: Final[dict[Any, tuple[str, str]]] = {
    str: ("a string", "strings"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "booleans"),
    Path: ("a path", "paths"),
}


class InvalidValue(ValueError):
    """Raised by a ``check`` or ``__post_init__`` to reject a value with a full message.

    ``key`` is relative to the field (or, in ``__post_init__``, to the
    table): ``"[2]"``, ``"ids"`` or ``"ids[0]"``; empty for the value itself.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.key = key


class _Failure(Exception):
    """Internal: a rejected value at an absolute key path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    type: Any
    required: bool
    check: Callable[[Any], Any] | None
    secret: bool
    conflicts: tuple[str, ...]
    rest: bool


_FIELDS: dict[type[Any], tuple[_Field, ...]] = {}
"""The fields of each dataclass seen, read once: annotations do not change."""


def build(cls: type[T], data: Mapping[str, Any], *, path: str, file: Path | str) -> T:
    """Convert the table ``data`` into an instance of the dataclass ``cls``.

    Args:
        cls: A dataclass whose field annotations describe the table.
        data: The parsed TOML table.
        path: Key path of the table, for messages: ``""`` for the whole
            file, ``"plugins.ping"`` for a plugin's settings.
        file: The config file, for messages; relative ``Path`` values are
            resolved against its directory.

    Raises:
        ConfigError: ``data`` does not fit ``cls``.
        TypeError: ``cls`` is not a dataclass or uses an unsupported annotation.
    """
    _fields(cls)  # Schema errors are the author's, whatever the data.
    base = Path(os.path.abspath(file)).parent
    try:
        return cast(T, _build_table(cls, data, path, base))
    except _Failure as failure:
        raise ConfigError(file, failure.key, failure.message) from None


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` was most likely meant to be, if any is close.

    A difference in case alone always matches, so ``guilds`` suggests ``GUILDS``.
    """
    by_folded = {candidate.casefold(): candidate for candidate in candidates}
    folded = word.casefold()
    if folded in by_folded:
        return by_folded[folded]
    matches = difflib.get_close_matches(folded, by_folded, n=1)
    return by_folded[matches[0]] if matches else None


def join_key(path: str, name: str) -> str:
    """Append a key to a key path, quoting it as TOML would if it is not bare."""
    part = name if _BARE_KEY.match(name) else json.dumps(name, ensure_ascii=False)
    return f"{path}.{part}" if path else part


def describe_value(value: object) -> str:
    """A short, TOML-like rendering of ``value`` for messages ("got ...")."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if _INT64_MIN <= value <= _INT64_MAX else "an integer out of range"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if len(value) > 40:
            return json.dumps(value[:40], ensure_ascii=False)[:-1] + '..."'
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------------------
# Schema: what a dataclass declares


def _fields(cls: type[Any]) -> tuple[_Field, ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = _read_fields(cls)
    return fields


def _read_fields(cls: type[Any]) -> tuple[_Field, ...]:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"expected a dataclass, got {cls!r}")
    try:
        hints = get_type_hints(cls)
    except Exception as exc:
        raise TypeError(f"cannot resolve the annotations of {cls.__qualname__}: {exc}") from exc
    result = []
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("internal"):
            continue
        tp = hints[f.name]
        _check_annotation(tp, f"{cls.__qualname__}.{f.name}")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        rest = bool(f.metadata.get("rest"))
        if rest and get_origin(tp) is not dict:
            raise TypeError(f"{cls.__qualname__}.{f.name}: a rest field must be a dict[str, X]")
        result.append(
            _Field(
                name=f.name,
                type=tp,
                required=required,
                check=f.metadata.get("check"),
                secret=bool(f.metadata.get("secret")),
                conflicts=tuple(f.metadata.get("conflicts", ())),
                rest=rest,
            )
        )
    if sum(f.rest for f in result) > 1:
        raise TypeError(f"{cls.__qualname__} has more than one rest field")
    return tuple(result)


def _check_annotation(tp: Any, where: str) -> None:
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any or tp in _SCALAR_NAMES or tp is type(None) or origin is Literal:
        return
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        _fields(tp)
    elif origin in (Union, types.UnionType, list, tuple):
        for arg in args:
            if arg is not Ellipsis:
                _check_annotation(arg, where)
    elif origin is dict and args and args[0] is str:
        _check_annotation(args[1], where)
    elif tp not in (list, tuple, dict):
        raise TypeError(f"{where}: unsupported annotation {tp!r}")


def _describe(tp: Any) -> str:
    """What a value of type ``tp`` looks like, for "expected ..." messages."""
    origin = get_origin(tp)
    if tp in _SCALAR_NAMES:
        return _SCALAR_NAMES[tp][0]
    if tp is Any:
        return "any value"
    if origin is Literal:
        choices = [describe_value(arg) for arg in get_args(tp)]
        if len(choices) <= 2:
            return " or ".join(choices)
        return "one of " + ", ".join(choices)
    if origin in (Union, types.UnionType):
        parts = [_describe(arg) for arg in get_args(tp) if arg is not type(None)]
        return " or ".join(parts) if len(parts) <= 2 else ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin in (list, tuple) or tp in (list, tuple):
        args = get_args(tp)
        if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
            item = args[0]
            if item in _SCALAR_NAMES:
                return "an array of " + _SCALAR_NAMES[item][1]
            if isinstance(item, type) and dataclasses.is_dataclass(item):
                return "an array of tables"
        elif args:
            return f"an array of {len(args)} items"
        return "an array"
    return "a table"


# ---------------------------------------------------------------------------
# Conversion: what the data holds


def _build_table(cls: type[Any], data: Any, key: str, base: Path) -> Any:
    if not isinstance(data, Mapping):
        raise _Failure(key, f"expected a table, got {describe_value(data)}")
    fields = _fields(cls)
    known = {f.name: f for f in fields if not f.rest}
    rest = next((f for f in fields if f.rest), None)
    extra: dict[str, Any] = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise _Failure(key, f"expected string keys, got {describe_value(name)}")
        if name in known:
            continue
        if rest is not None and isinstance(value, Mapping):
            extra[name] = value
            continue
        raise _Failure(join_key(key, name), _unknown_key(name, known, key, rest is not None))
    kwargs: dict[str, Any] = {}
    for f in known.values():
        sub = join_key(key, f.name)
        if f.name not in data:
            if f.required:
                raise _Failure(sub, f"missing (expected {_describe(f.type)})")
            continue
        for other in f.conflicts:
            if other in data:
                raise _Failure(sub, f"set either {f.name} or {other}, not both")
        kwargs[f.name] = _field_value(f, data[f.name], sub, base)
    if rest is not None:
        kwargs[rest.name] = _field_value(rest, extra, key, base)
    try:
        return cls(**kwargs)
    except InvalidValue as exc:
        raise _Failure(_join_relative(key, exc.key), exc.message) from None
    except ValueError as exc:
        raise _Failure(key, str(exc)) from None


def _unknown_key(name: str, known: Mapping[str, _Field], key: str, takes_tables: bool) -> str:
    match = suggest(name, known)
    if match is not None:
        return f'unknown key (did you mean "{match}"?)'
    if not known:
        return "unknown key (this table takes no keys)"
    valid = ", ".join(sorted(known))
    if takes_tables:
        return f"unknown key (expected one of {valid}, or a [{join_key(key, 'NAME')}] table)"
    return f"unknown key (expected one of {valid})"


def _field_value(f: _Field, raw: Any, key: str, base: Path) -> Any:
    value = _convert(f.type, raw, key, base, f.secret)
    if f.check is None or value is None:
        return value
    try:
        return f.check(value)
    except InvalidValue as exc:
        raise _Failure(_join_relative(key, exc.key), exc.message) from None
    except ValueError as exc:
        message = str(exc)
        if message.startswith("expected") and not f.secret:
            message += f", got {describe_value(raw)}"
        raise _Failure(key, message) from None


def _join_relative(key: str, relative: str) -> str:
    if not relative:
        return key
    if not key or relative.startswith("["):
        return key + relative
    return f"{key}.{relative}"


def _convert(tp: Any, value: Any, key: str, base: Path, secret: bool) -> Any:
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build_table(tp, value, key, base)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, key, base, secret)
    if origin is Literal:
        return _convert_literal(tp, value, key, secret)
    if origin in (list, tuple) or tp in (list, tuple):
        return _convert_array(tp, value, key, base, secret)
    if origin is dict or tp is dict:
        return _convert_dict(tp, value, key, base, secret)
    return _convert_scalar(tp, value, key, base, secret)


def _mismatch(tp: Any, value: Any, key: str, secret: bool, hint: str = "") -> _Failure:
    got = "" if secret else f", got {describe_value(value)}"
    return _Failure(key, f"expected {_describe(tp)}{got}{hint}")


def _convert_scalar(tp: Any, value: Any, key: str, base: Path, secret: bool) -> Any:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp in (int, float) and is_int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Failure(key, "expected an integer that fits in 64 bits")
        return value if tp is int else float(value)
    if tp is float and isinstance(value, float) and not math.isnan(value):
        return value
    if tp is Path and isinstance(value, str) and value and "\0" not in value:
        return Path(os.path.abspath(base / value))
    raise _mismatch(tp, value, key, secret)


def _convert_literal(tp: Any, value: Any, key: str, secret: bool) -> Any:
    choices = get_args(tp)
    for choice in choices:
        if type(choice) is type(value) and choice == value:
            return choice
    hint = ""
    if isinstance(value, str) and not secret:
        match = suggest(value, [choice for choice in choices if isinstance(choice, str)])
        if match is not None:
            hint = f' (did you mean "{match}"?)'
    raise _mismatch(tp, value, key, secret, hint)


def _convert_union(tp: Any, value: Any, key: str, base: Path, secret: bool) -> Any:
    arms = get_args(tp)
    if value is None and type(None) in arms:
        return None
    if isinstance(value, str) and not value and Path in arms and type(None) in arms:
        return None
    failures = []
    for arm in arms:
        if arm is type(None):
            continue
        try:
            return _convert(arm, value, key, base, secret)
        except _Failure as failure:
            failures.append(failure)
    # An arm that got past the value's shape (an array of the wrong items)
    # explains the problem better than "expected X or Y".
    deeper = [failure for failure in failures if failure.key != key]
    if len(failures) == 1 or len(deeper) == 1:
        raise (deeper or failures)[0]
    raise _mismatch(tp, value, key, secret)


def _convert_array(tp: Any, value: Any, key: str, base: Path, secret: bool) -> Any:
    if not isinstance(value, list | tuple):
        raise _mismatch(tp, value, key, secret)
    args = get_args(tp)
    is_list = tp is list or get_origin(tp) is list
    if is_list or not args or (len(args) == 2 and args[1] is Ellipsis):
        item_types = [args[0] if args else Any] * len(value)
    elif len(args) == len(value):
        item_types = list(args)
    else:
        raise _mismatch(tp, value, key, secret)
    items = [
        _convert(item_type, item, f"{key}[{index}]", base, secret)
        for index, (item_type, item) in enumerate(zip(item_types, value, strict=True))
    ]
    return items if is_list else tuple(items)


def _convert_dict(tp: Any, value: Any, key: str, base: Path, secret: bool) -> Any:
    if not isinstance(value, Mapping):
        raise _mismatch(tp, value, key, secret)
    args = get_args(tp)
    item_type = args[1] if args else Any
    result = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise _Failure(key, f"expected string keys, got {describe_value(name)}")
        result[name] = _convert(item_type, item, join_key(key, name), base, secret)
    return result
