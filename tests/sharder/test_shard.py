"""WebsocketShard and InternalSharder against the emulator, over a real loopback websocket."""

from __future__ import annotations

import itertools
import math
import sys
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from sharder import GatewayClosedError, LocalIdentifyQueue, ShardStatus
from sharder._transport import MAX_BATCH
from tests.sharder.helpers import (
    TOKEN,
    Recorder,
    emulator,
    running_sharder,
    send_messages,
)

# ---------------------------------------------------------------- heartbeats


async def test_heartbeats_start_jittered_after_hello_then_follow_the_interval() -> None:
    async with emulator(heartbeat_interval=0.2) as discord, running_sharder(discord):
        await discord.wait_for("heartbeat", shard_id=0, count=5, timeout=5)
        connected = discord.entries("connect")[0].time
        beats = [e.time for e in discord.entries("heartbeat", 0)]
        assert 0 <= beats[0] - connected <= 0.2 + 0.05
        gaps = [b - a for a, b in itertools.pairwise(beats)]
        assert all(0.15 <= gap <= 0.3 for gap in gaps), gaps
        assert len(discord.entries("heartbeat_ack", 0)) >= 4


async def test_server_requested_heartbeat_is_answered_at_once() -> None:
    async with emulator(heartbeat_interval=30.0) as discord, running_sharder(discord):
        await discord.wait_for("ready", shard_id=0)
        before = len(discord.entries("heartbeat", 0))
        await discord.request_heartbeat(0)
        [beat] = (await discord.wait_for("heartbeat", shard_id=0, count=before + 1))[before:]
        requested = discord.entries("heartbeat_requested", 0)[-1]
        assert beat.time - requested.time < 0.1


async def test_heartbeat_requested_between_dispatches_of_one_read_is_answered_in_order() -> None:
    async with emulator(heartbeat_interval=30.0) as discord, running_sharder(discord) as (_, rec):
        await discord.wait_for("ready", shard_id=0)
        before = len(discord.entries("heartbeat", 0))
        # Sent without a checkpoint in between, so that they arrive in one read: the
        # op 1 stops the slice for its heartbeat; the dispatches after it still come.
        await send_messages(discord, 0, ["a", "b"])
        await discord.request_heartbeat(0)
        await send_messages(discord, 0, ["c", "d"])
        await discord.wait_for("heartbeat", shard_id=0, count=before + 1, timeout=2)
        await rec.wait(lambda: len(rec.contents()) == 4)
        assert rec.contents() == ["a", "b", "c", "d"]
        assert len(discord.entries("connect")) == 1


async def test_missing_heartbeat_ack_is_a_zombie_closed_and_resumed() -> None:
    async with emulator(heartbeat_interval=0.2) as discord, running_sharder(discord) as (_, rec):
        await discord.wait_for("heartbeat_ack", shard_id=0)
        await send_messages(discord, 0, ["before"])
        await rec.wait(lambda: rec.contents() == ["before"])
        discord.zombify(0)
        await send_messages(discord, 0, ["during"])
        await discord.wait_for("resumed", shard_id=0, timeout=5)
        await rec.wait(lambda: rec.contents() == ["before", "during"])
        assert any("zombie" in line for line in rec.debug_lines())
        assert not discord.entries("identify", 0)[1:]


# ---------------------------------------------------------------- identify and ready


async def test_identify_carries_token_intents_properties_shard_compress_and_presence() -> None:
    presence = {"status": "idle", "activities": [], "since": None, "afk": False}
    async with (
        emulator() as discord,
        running_sharder(discord, total=2, large_threshold=120, presence=presence, intents=32767),
    ):
        entries = await discord.wait_for("identify", count=2)
        shards = sorted(tuple(e.detail["shard"]) for e in entries)
        assert shards == [(0, 2), (1, 2)]
        detail = entries[0].detail
        assert detail["intents"] == 32767
        assert detail["properties"]["browser"] == "botrun"
        assert detail["large_threshold"] == 120
        assert detail["presence"]["status"] == "idle"
        assert detail["compress"] is False


async def test_ready_stores_session_id_sequence_and_resume_url() -> None:
    async with emulator() as discord, running_sharder(discord) as (sharder, rec):
        await rec.wait(lambda: bool(rec.events["ready"]))
        session = sharder.shards[0].session
        assert session is not None
        [ready] = discord.entries("ready", 0)
        assert session.session_id == ready.session_id
        assert session.resume_url == discord.resume_gateway_url
        assert sharder.shards[0].status is ShardStatus.READY
        assert sharder.shards[0].ready_at is not None


# ---------------------------------------------------------------- close codes and signals


async def _fault(discord: Any, kind: str) -> None:
    if kind == "drop":
        await discord.drop(0)
    elif kind == "op7":
        await discord.reconnect(0)
    elif kind == "op9-true":
        await discord.invalidate(0, resumable=True)
    else:
        await discord.close_shard(0, int(kind))


@pytest.mark.parametrize(
    "fault", ["drop", "op7", "op9-true", "4000", "4001", "4002", "4005", "4008", "1000", "1001"]
)
async def test_resumable_signal_resumes_and_delivers_every_missed_event_once_in_order(
    fault: str,
) -> None:
    async with emulator() as discord, running_sharder(discord) as (_, rec):
        await discord.wait_for("ready", shard_id=0)
        await send_messages(discord, 0, ["a", "b", "c"])
        await rec.wait(lambda: len(rec.contents()) == 3)
        await _fault(discord, fault)
        await send_messages(discord, 0, ["d", "e", "f"])
        await discord.wait_for("resumed", shard_id=0, timeout=5)
        await send_messages(discord, 0, ["g"])
        await rec.wait(lambda: len(rec.contents()) >= 7)
        await anyio.sleep(0.1)
        assert rec.contents() == list("abcdefg")
        assert len(discord.entries("identify", 0)) == 1
        if fault != "op9-true":  # op 9 d=true resumes on the same socket
            resume_connect = discord.entries("connect")[-1]
            assert resume_connect.detail["path"] == "/resume"


@pytest.mark.parametrize("fault", ["op9-false", "4003", "4007", "4009"])
async def test_unresumable_signal_identifies_anew_through_the_queue(fault: str) -> None:
    async with emulator() as discord, running_sharder(discord, timeout=0.3) as (_, rec):
        await discord.wait_for("ready", shard_id=0)
        if fault == "op9-false":
            await discord.invalidate(0, resumable=False)
        else:
            await discord.close_shard(0, int(fault))
        second = (await discord.wait_for("identify", shard_id=0, count=2, timeout=5))[1]
        first = discord.entries("identify", 0)[0]
        # The identify queue spaces identifies of one bucket by its timeout.
        assert second.time - first.time >= 0.3 - 0.02
        if fault == "op9-false":
            sent = discord.entries("invalid_session_sent", 0)[-1]
            assert second.time - sent.time >= 0.05
        await rec.wait(lambda: len(rec.events["ready"]) == 2)
        assert not discord.violations


@pytest.mark.parametrize("code", [4004, 4010, 4011, 4012, 4013, 4014])
async def test_fatal_close_code_emits_close_and_error_once_and_never_reconnects(
    code: int,
) -> None:
    async with emulator() as discord, running_sharder(discord) as (sharder, rec):
        await discord.wait_for("ready", shard_id=0)
        await discord.close_shard(0, code, "fatal for the test")
        await rec.wait(lambda: bool(rec.events["close"]))
        await anyio.sleep(0.3)
        [(error, shard_id)] = rec.events["close"]
        assert isinstance(error, GatewayClosedError)
        assert (error.code, shard_id) == (code, 0)
        assert [e for e, _ in rec.events["error"]] == [error]
        assert len(discord.entries("connect")) == 1
        assert sharder.shards[0].status is ShardStatus.CLOSED


@pytest.mark.parametrize(("invalidate", "code"), [(False, 4099), (True, 1000)])
async def test_manual_close_uses_1000_only_to_invalidate(invalidate: bool, code: int) -> None:
    async with emulator() as discord, running_sharder(discord) as (sharder, rec):
        await rec.wait(lambda: bool(rec.events["ready"]))
        await sharder.shards[0].close(invalidate=invalidate)
        [closed] = await discord.wait_for("client_close", shard_id=0)
        assert closed.detail["code"] == code
        assert (sharder.shards[0].session is None) is invalidate
        assert not rec.events["close"]


async def test_sessions_fed_back_as_shard_options_resume_after_a_restart() -> None:
    async with emulator() as discord:
        async with running_sharder(discord, total=2) as (sharder, rec):
            await discord.wait_for("ready", count=2)
            await send_messages(discord, 1, ["x"])
            await rec.wait(lambda: rec.contents(1) == ["x"])
        sessions = sharder.get_current_sessions()
        assert set(sessions) == {0, 1}
        await send_messages(discord, 1, ["y", "z"])
        async with running_sharder(discord, total=2, shard_options=sessions) as (_, rec2):
            await discord.wait_for("resumed", count=2)
            await rec2.wait(lambda: rec2.contents(1) == ["y", "z"])
        assert len(discord.entries("identify")) == 2


# ---------------------------------------------------------------- identify queue


async def test_identify_controller_paces_buckets_and_breaks_no_rule() -> None:
    shards, concurrency, timeout = 6, 2, 1.0
    async with emulator(max_concurrency=concurrency, identify_window=0.9, shards=shards) as discord:
        async with running_sharder(discord, total=shards, timeout=timeout) as (sharder, _):
            readies = await discord.wait_for("ready", count=shards, timeout=10)
            identifies = discord.entries("identify")
            took = max(e.time for e in readies) - min(e.time for e in identifies)
            ideal = (math.ceil(shards / concurrency) - 1) * timeout
            assert abs(took - ideal) <= ideal * 0.05, (took, ideal)
            assert not discord.violations
            assert sharder.controller is not None
            assert sharder.controller.remaining == 1000 - shards


async def test_identify_hook_is_awaited_before_every_identify() -> None:
    # The hook stands for a queue owned by another process.
    elsewhere = LocalIdentifyQueue(concurrency=1, timeout=0.25)
    calls: list[int] = []

    async def hook(shard_id: int) -> None:
        calls.append(shard_id)
        await elsewhere.acquire(shard_id)

    async with (
        emulator() as discord,
        running_sharder(discord, total=2, identify_hook=hook) as (sharder, rec),
    ):
        assert sharder.controller is None
        await rec.wait(lambda: len(rec.events["ready"]) == 2)
        await discord.invalidate(1, resumable=False)
        await rec.wait(lambda: len(rec.events["ready"]) == 3)
        assert sorted(calls) == [0, 1, 1]
        assert len(discord.entries("identify")) == 3
        assert not discord.violations


async def test_shards_connect_in_identify_slot_order_two_waves_ahead_at_most() -> None:
    shards, concurrency, timeout = 12, 2, 0.25
    async with emulator(max_concurrency=concurrency, identify_window=0.2, shards=shards) as discord:
        async with running_sharder(discord, total=shards, timeout=timeout):
            await discord.wait_for("ready", count=shards, timeout=15)
        connects = [e.time for e in discord.entries("connect")]
        identifies = discord.entries("identify")
        # Slots go in shard id order (ids 0-1 are the first wave, 2-3 the next, ...), give
        # or take the one wave connected ahead, whose HELLO may come first.
        order = [e.shard_id for e in identifies]
        for made, shard_id in enumerate(order):
            assert shard_id is not None
            assert shard_id // concurrency <= made // concurrency + 1, order
        # Before the first IDENTIFY, only the first two waves had connected.
        assert sum(t <= identifies[0].time for t in connects) <= 2 * concurrency
        # Never more than two waves connected ahead of the identifies made so far.
        for made, entry in enumerate(identifies):
            opened = sum(t <= entry.time for t in connects)
            assert opened <= made + 2 * concurrency, (made, opened)
        assert not discord.violations


async def test_first_identify_is_not_delayed_by_connecting_every_shard() -> None:
    shards = 40
    async with emulator(max_concurrency=1, identify_window=0.2, shards=shards) as discord:
        async with running_sharder(discord, total=shards, timeout=0.25) as (sharder, _):
            [first] = await discord.wait_for("identify", timeout=5)
            assert first.shard_id in (0, 1)  # the first wave, or the one connected ahead
            assert len(discord.entries("connect")) <= 2
            assert sharder.connect_gate.admitted <= 2


async def test_identify_hook_keeps_a_bounded_number_of_connections_ahead() -> None:
    release = anyio.Event()

    async def hook(shard_id: int) -> None:
        await release.wait()  # another process owns the queue and says nothing yet

    async with (
        emulator(shards=6, max_concurrency=6) as discord,
        running_sharder(discord, total=6, identify_hook=hook, connect_ahead=2) as (_, rec),
    ):
        await anyio.sleep(0.3)
        assert len(discord.entries("connect")) == 2
        release.set()
        await rec.wait(lambda: len(rec.events["ready"]) == 6)
        assert len(discord.entries("connect")) == 6


# ---------------------------------------------------------------- listeners


async def test_listener_error_is_reported_with_the_shard_id_and_the_shard_keeps_going() -> None:
    async with emulator() as discord, running_sharder(discord) as (sharder, rec):

        def explode(data: dict[str, Any], shard_id: int) -> None:
            if data["content"] == "boom":
                raise RuntimeError("listener bug")

        sharder.on("MESSAGE_CREATE", explode)
        await discord.wait_for("ready", shard_id=0)
        await send_messages(discord, 0, ["boom", "fine"])
        await rec.wait(lambda: rec.contents() == ["boom", "fine"])
        await rec.wait(lambda: bool(rec.events["error"]))
        [(error, shard_id)] = rec.events["error"]
        assert isinstance(error, RuntimeError)
        assert shard_id == 0


async def test_slow_async_listener_never_delays_heartbeats() -> None:
    async with emulator(heartbeat_interval=0.2) as discord, running_sharder(discord) as (s, rec):
        seen: list[str] = []

        async def slow(data: dict[str, Any], shard_id: int) -> None:
            await anyio.sleep(1.0)
            seen.append(data["content"])

        s.on("MESSAGE_CREATE", slow)
        await discord.wait_for("heartbeat_ack", shard_id=0)
        await send_messages(discord, 0, ["1", "2"])
        start = len(discord.entries("heartbeat_ack", 0))
        await anyio.sleep(1.2)
        assert len(discord.entries("heartbeat_ack", 0)) - start >= 4
        assert seen == ["1"]
        assert rec.contents() == ["1", "2"]  # the sync recorder was not held up


async def test_blocking_sync_listener_causes_no_false_zombie_verdict() -> None:
    async with emulator(heartbeat_interval=0.3) as discord, running_sharder(discord) as (s, rec):

        def block(data: dict[str, Any], shard_id: int) -> None:
            if data["content"] == "block":
                time.sleep(1.0)  # the whole event loop stops

        s.on("MESSAGE_CREATE", block)
        await discord.wait_for("heartbeat_ack", shard_id=0)
        await send_messages(discord, 0, ["block", "after"])
        await rec.wait(lambda: rec.contents() == ["block", "after"])
        await anyio.sleep(0.8)
        assert len(discord.entries("connect")) == 1
        assert not any("zombie" in line for line in rec.debug_lines())


async def test_listeners_see_one_shards_events_in_sequence_order() -> None:
    async with emulator() as discord, running_sharder(discord) as (s, rec):
        seqs: list[int] = []
        order: list[str] = []

        async def async_listener(data: dict[str, Any], shard_id: int) -> None:
            order.append(data["content"])

        s.on("event", lambda payload, shard_id: seqs.append(payload["s"]))
        s.on("MESSAGE_CREATE", async_listener)
        await discord.wait_for("ready", shard_id=0)
        contents = [str(i) for i in range(300)]
        await send_messages(discord, 0, contents)
        await rec.wait(lambda: len(order) == 300)
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        assert order == contents


# ---------------------------------------------------------------- bad input


async def test_malformed_json_reconnects_and_resumes_without_loss() -> None:
    async with emulator() as discord, running_sharder(discord, compression=None) as (_, rec):
        await discord.wait_for("ready", shard_id=0)
        await send_messages(discord, 0, ["a"])
        await discord.send_raw(0, b'{"t":"MESSAGE_CREATE","s":', binary=False)
        await send_messages(discord, 0, ["b"])
        await discord.wait_for("resumed", shard_id=0, timeout=5)
        await rec.wait(lambda: rec.contents() == ["a", "b"])
        assert any("bad data" in line for line in rec.debug_lines())


async def test_corrupt_zlib_stream_reconnects_and_resumes_without_loss() -> None:
    async with emulator() as discord, running_sharder(discord) as (_, rec):
        await discord.wait_for("ready", shard_id=0)
        await send_messages(discord, 0, ["a"])
        await discord.send_raw(0, b"not zlib at all" + b"\x00\x00\xff\xff", binary=True)
        await send_messages(discord, 0, ["b"])
        await discord.wait_for("resumed", shard_id=0, timeout=5)
        await rec.wait(lambda: rec.contents() == ["a", "b"])


async def test_oversized_frame_reconnects_and_resumes_without_loss() -> None:
    async with (
        emulator() as discord,
        running_sharder(discord, compression=None, max_message_size=8192) as (_, rec),
    ):
        await discord.wait_for("ready", shard_id=0)
        await discord.send_raw(0, b" " * 20_000, binary=False)
        await send_messages(discord, 0, ["b"])
        await discord.wait_for("resumed", shard_id=0, timeout=5)
        await rec.wait(lambda: rec.contents() == ["b"])


async def test_unknown_opcode_is_ignored_with_a_debug_line() -> None:
    async with emulator() as discord, running_sharder(discord) as (_, rec):
        await discord.wait_for("ready", shard_id=0)
        await discord.send_payload(0, {"op": 99, "d": {"new": "feature"}})
        await send_messages(discord, 0, ["still here"])
        await rec.wait(lambda: rec.contents() == ["still here"])
        assert any("unknown opcode" in line for line in rec.debug_lines())
        assert len(discord.entries("connect")) == 1


@pytest.mark.parametrize("compression", ["zlib-stream", "zstd-stream", "payload", None])
async def test_every_compression_delivers_events(compression: str | None) -> None:
    async with (
        emulator() as discord,
        running_sharder(discord, compression=compression) as (
            _,
            rec,
        ),
    ):
        await discord.wait_for("ready", shard_id=0)
        contents = ["short", "x" * 5000]
        await send_messages(discord, 0, contents)
        await rec.wait(lambda: rec.contents() == contents)


async def test_disabled_events_are_dropped_but_still_advance_the_sequence() -> None:
    async with (
        emulator() as discord,
        running_sharder(discord, disabled_events=["PRESENCE_UPDATE"]) as (sharder, rec),
    ):
        await discord.wait_for("ready", shard_id=0)
        await discord.dispatch(0, "PRESENCE_UPDATE", {"status": "online"})
        last = (await send_messages(discord, 0, ["m"]))[-1]
        await rec.wait(lambda: rec.contents() == ["m"])
        assert [p["t"] for p, _ in rec.events["event"]] == ["READY", "MESSAGE_CREATE"]
        session = sharder.shards[0].session
        assert session is not None
        assert session.sequence == last


async def test_disabled_events_dropped_in_a_replay_count_in_its_resumed_total() -> None:
    # The replay and RESUMED arrive in one read: the dropped presences must be counted
    # before RESUMED is (its "replayed" is the dispatches received since the RESUME).
    async with (
        emulator() as discord,
        running_sharder(discord, disabled_events=["PRESENCE_UPDATE"]) as (sharder, rec),
    ):
        await discord.wait_for("ready", shard_id=0)
        await send_messages(discord, 0, ["a"])
        await rec.wait(lambda: rec.contents() == ["a"])
        await discord.drop(0)
        presences = [("PRESENCE_UPDATE", {"status": "idle"})] * 5
        seqs = await discord.dispatch_many(0, [*presences, ("MESSAGE_CREATE", {"content": "b"})])
        await discord.dispatch_many(0, presences)
        await rec.wait(lambda: len(rec.events["resumed"]) == 1)
        [(resumed, _)] = rec.events["resumed"]
        assert resumed["replayed"] == discord.entries("resumed")[-1].detail["replayed"] == 11
        await rec.wait(lambda: rec.contents() == ["a", "b"])
        session = sharder.shards[0].session
        assert session is not None
        assert session.sequence == seqs[-1] + 5 + 1  # the trailing presences and RESUMED


async def test_slices_of_a_read_dropped_whole_go_on_without_letting_other_tasks_run() -> None:
    # One read: a message, five slices' worth of disabled presences, a message. Other
    # tasks run after the first slice (it delivered an event), not between the next ones.
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    seen: dict[str, int] = {}
    async with (
        emulator() as discord,
        running_sharder(discord, disabled_events=["PRESENCE_UPDATE"]) as (sharder, rec),
        anyio.create_task_group() as tg,
    ):
        sharder.on("MESSAGE_CREATE", lambda data, _: seen.setdefault(data["content"], ticks))
        await discord.wait_for("ready", shard_id=0)
        tg.start_soon(ticker)
        presences = [("PRESENCE_UPDATE", {"status": "idle"})] * (5 * MAX_BATCH)
        await discord.dispatch_many(
            0,
            [
                ("MESSAGE_CREATE", {"content": "a"}),
                *presences,
                ("MESSAGE_CREATE", {"content": "b"}),
            ],
        )
        await rec.wait(lambda: rec.contents() == ["a", "b"])
        tg.cancel_scope.cancel()
    assert seen["b"] - seen["a"] <= 2  # 5 with a checkpoint before every slice


# ---------------------------------------------------------------- commands


async def test_request_guild_members_combines_every_chunk() -> None:
    async with (
        emulator(guilds_per_shard=1, members_per_guild=2500) as discord,
        running_sharder(discord) as (sharder, rec),
    ):
        await discord.wait_for("ready", shard_id=0)
        await rec.wait(lambda: bool(rec.events["ready"]))
        guild_id = rec.events["ready"][0][0]["guilds"][0]["id"]
        result = await sharder.shards[0].request_guild_members(guild_id, query="", limit=0)
        assert result["guild_id"] == str(guild_id)
        assert len(result["members"]) == 2500


async def test_update_voice_state_waits_for_the_server_update() -> None:
    async with emulator(guilds_per_shard=1) as discord, running_sharder(discord) as (s, rec):
        await rec.wait(lambda: bool(rec.events["ready"]))
        guild_id = rec.events["ready"][0][0]["guilds"][0]["id"]
        state = await s.shards[0].update_voice_state(guild_id, "123", wait_for_server=True)
        assert state["channel_id"] == "123"
        assert state["token"]
        assert state["endpoint"]


async def test_presence_update_and_ping_reach_the_gateway() -> None:
    async with emulator() as discord, running_sharder(discord) as (sharder, _):
        await discord.wait_for("ready", shard_id=0)
        shard = sharder.shards[0]
        await shard.update_presence({"status": "dnd", "activities": [{"name": "tests", "type": 0}]})
        latency = await shard.ping()
        assert 0 <= latency < 1
        commands = [e.detail.get("op") for e in discord.entries("command", 0)]
        assert 3 in commands
        assert sharder.get_average_ping() is not None


async def test_commands_never_exceed_the_send_limit() -> None:
    async with emulator(command_limit=20, command_window=1.0, heartbeat_interval=10) as discord:
        async with running_sharder(discord) as (sharder, _):
            await discord.wait_for("ready", shard_id=0)
            shard = sharder.shards[0]
            shard._limiter.limit, shard._limiter.window = 20, 1.0
            start = anyio.current_time()
            for _ in range(30):
                await shard.send(
                    {
                        "op": 3,
                        "d": {"status": "online", "since": None, "activities": [], "afk": False},
                    }
                )
            assert anyio.current_time() - start >= 0.9
            assert not discord.entries("rate_limited")


# ---------------------------------------------------------------- offline and secrets


@pytest.mark.parametrize("size", [0, sys.maxsize + 1])
def test_a_max_message_size_out_of_range_is_refused_when_the_shard_is_made(size: int) -> None:
    from sharder import WebsocketShard

    with pytest.raises(ValueError, match=r"options\['max_message_size'\] must be from 1"):
        WebsocketShard({"token": TOKEN, "intents": 1, "max_message_size": size})


def test_a_disabled_event_name_with_a_quote_is_refused() -> None:
    from sharder import WebsocketShard

    shard = WebsocketShard({"token": TOKEN, "intents": 1, "disabled_events": ["TYPING_START"]})
    with pytest.raises(ValueError, match="not an event name"):
        shard.disabled_events = ['PRESENCE_UPDATE","s":1,']
    assert shard.disabled_events == {"TYPING_START"}


def test_shards_disabling_the_same_events_share_one_set_of_names() -> None:
    # The C inflater keeps a lookup table per set object: one for all these shards.
    from sharder import WebsocketShard

    first = WebsocketShard({"token": TOKEN, "intents": 1, "disabled_events": ["A", "B"]})
    second = WebsocketShard({"token": TOKEN, "intents": 1, "disabled_events": ("B", "A", "A")})
    assert first._disabled is second._disabled


async def test_offline_mode_keeps_retrying_until_closed() -> None:
    async with emulator() as discord:
        url = discord.gateway_url
    from sharder import WebsocketShard

    shard = WebsocketShard(
        {
            "token": TOKEN,
            "intents": 1,
            "url": url,
            "reconnect_delay": 0.01,
            "max_reconnect_delay": 0.05,
            "connect_timeout": 0.5,
        }
    )
    rec = Recorder()
    shard.on("debug", lambda line, _: rec.events["debug"].append((line, 0)))
    async with anyio.create_task_group() as tg:
        tg.start_soon(shard.run)
        await rec.wait(lambda: len(rec.debug_lines()) >= 5)
        assert shard.status is ShardStatus.OFFLINE
        await shard.close()
    assert shard.status is ShardStatus.CLOSED


async def test_token_never_appears_in_debug_errors_or_reprs() -> None:
    async with emulator() as discord, running_sharder(discord, total=2) as (sharder, rec):
        await rec.wait(lambda: len(rec.events["ready"]) == 2)
        await discord.drop(0)
        await discord.close_shard(1, 4004)
        await discord.wait_for("resumed", shard_id=0, timeout=5)
        await rec.wait(lambda: bool(rec.events["close"]))
        texts = [*rec.debug_lines(), *(str(e) for e, _ in rec.events["error"])]
        texts += [repr(sharder), *(repr(s) for s in sharder.shards.values())]
        texts += [repr(sharder.controller)]
        assert texts
        assert all(TOKEN not in text for text in texts)
        assert all(part not in text for text in texts for part in TOKEN.split("."))
