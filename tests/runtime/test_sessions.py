"""The sessions file: round trip, privacy, atomic replacement, and refusing bad files."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import ConfigError
from runtime.sessions import SessionStore
from tests.sharder.helpers import TOKEN, emulator, running_sharder

JSON_SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
ENTRY = {
    "session_id": st.text(max_size=4) | JSON_SCALAR,
    "sequence": st.integers(-2, 2**63) | JSON_SCALAR,
    "resume_url": st.text(max_size=8) | JSON_SCALAR,
}
SESSIONS: dict[int, dict[str, Any]] = {
    0: {"session_id": "abc", "sequence": 41, "resume_url": "wss://resume.example/0"},
    1: {"session_id": "def", "sequence": 7, "resume_url": None},
}


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "state" / "sessions.json", config_file=tmp_path / "c.toml")


def test_save_then_load_round_trips(store: SessionStore) -> None:
    store.save(2, SESSIONS)
    assert store.load(2, [0, 1]) == SESSIONS
    assert store.load(2, [1]) == {1: SESSIONS[1]}
    assert store.saves == 1


def test_a_missing_file_means_no_sessions(
    store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    assert store.load(2, [0, 1]) == {}
    assert caplog.records == []


def test_the_file_is_private(store: SessionStore) -> None:
    old_umask = os.umask(0)
    try:
        store.save(2, SESSIONS)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_saving_replaces_a_file_with_looser_permissions(store: SessionStore) -> None:
    store.path.parent.mkdir()
    store.path.write_text("{}")
    store.path.chmod(0o644)
    store.save(2, SESSIONS)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_a_crash_mid_write_leaves_the_old_file_intact(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(2, SESSIONS)
    before = store.path.read_bytes()

    def crash(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    newer = {0: {**SESSIONS[0], "sequence": 99}}
    with pytest.raises(OSError, match="No space left"):
        store.save(2, newer)
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["sessions.json"]
    assert store.saves == 1


def test_a_crash_while_writing_the_data_leaves_the_old_file_intact(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(2, SESSIONS)
    before = store.path.read_bytes()

    def crash(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save(2, {0: {**SESSIONS[0], "sequence": 99}})
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["sessions.json"]


def test_a_file_for_another_shard_total_is_ignored(
    store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="botrun.sessions")
    store.save(2, SESSIONS)
    assert store.load(4, [0, 1]) == {}
    assert "written for 2 shards, not 4" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'{"version": 99, "total": 2, "shards": {}}',
        b'{"total": 2, "shards": {}}',
    ],
    ids=["syntax", "binary", "list", "future-version", "no-version"],
)
def test_a_corrupt_file_is_ignored_with_a_warning(
    store: SessionStore, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    store.path.parent.mkdir()
    store.path.write_bytes(content)
    assert store.load(2, [0, 1]) == {}
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert str(store.path) in warning.getMessage()


def test_bad_entries_are_skipped_and_good_ones_kept(store: SessionStore) -> None:
    shards = {
        "0": SESSIONS[0],
        "1": {"session_id": "", "sequence": 3},
        "2": {"session_id": "x", "sequence": -1},
        "3": {"session_id": "x", "sequence": True},
        "²": {"session_id": "x", "sequence": 1},  # a digit to str.isdigit, not to int()
        "-4": {"session_id": "x", "sequence": 1},
        "5": "not a table",
        "6": {"session_id": "x", "sequence": 1, "resume_url": 5},
    }
    store.path.parent.mkdir()
    store.path.write_text(json.dumps({"version": 1, "total": 8, "shards": shards}))
    loaded = store.load(8, list(range(8)))
    assert loaded == {0: SESSIONS[0], 6: {"session_id": "x", "sequence": 1, "resume_url": None}}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
SHARD_KEYS = st.sampled_from(["0", "1", "2", "7", "²", "٣", "-1", " 1", "01"]) | st.text(max_size=3)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> SessionStore:
    return SessionStore(tmp_path_factory.mktemp("sessions") / "sessions.json")


VALID = st.fixed_dictionaries(
    {"session_id": st.text(min_size=1, max_size=4), "sequence": st.integers(0, 2**63)}
)


@given(
    shards=st.dictionaries(
        SHARD_KEYS, VALID | st.fixed_dictionaries({}, optional=ENTRY) | JSON, max_size=4
    )
)
def test_loading_any_shards_table_never_raises(scratch: SessionStore, shards: Any) -> None:
    scratch.path.write_text(json.dumps({"version": 1, "total": 3, "shards": shards}))
    loaded = scratch.load(3, [0, 1, 2])
    assert set(loaded) <= {0, 1, 2}
    for session in loaded.values():
        assert set(session) == {"session_id", "sequence", "resume_url"}


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_file_others_may_write_is_refused(store: SessionStore, mode: int) -> None:
    store.save(2, SESSIONS)
    store.path.chmod(mode)
    with pytest.raises(ConfigError, match="writable by other users") as caught:
        store.check_permissions()
    assert caught.value.key == "sessions.file"
    assert f"chmod 600 {store.path}" in caught.value.message


def test_a_world_writable_folder_is_refused(store: SessionStore) -> None:
    store.path.parent.mkdir()
    store.path.parent.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by every user"):
        store.check_permissions()


def test_a_private_file_and_a_missing_one_are_accepted(store: SessionStore) -> None:
    store.check_permissions()
    store.save(2, SESSIONS)
    store.path.chmod(0o640)
    store.check_permissions()


def test_only_session_fields_are_written(store: SessionStore) -> None:
    leaky = {0: {**SESSIONS[0], "token": TOKEN, "intents": 513}}
    store.save(1, leaky)
    text = store.path.read_text()
    assert TOKEN not in text
    assert "intents" not in text
    assert store.load(1, [0]) == {0: SESSIONS[0]}


async def test_the_token_never_appears_in_the_file(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions.json")
    async with emulator() as discord, running_sharder(discord, total=2) as (sharder, _):
        await discord.wait_for("ready", count=2)
        sessions = sharder.get_current_sessions()
        store.save(sharder.total, sessions)
    text = store.path.read_text()
    assert TOKEN not in text
    assert TOKEN.split(".")[1] not in text
    loaded = store.load(2, [0, 1])
    assert {s["session_id"] for s in loaded.values()} <= set(discord.sessions)
    assert loaded == {k: dict(v) for k, v in sessions.items()}
