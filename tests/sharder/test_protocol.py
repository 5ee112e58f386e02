"""The gateway state machine, driven with plain dicts and an explicit clock."""

from __future__ import annotations

from typing import Any

import pytest

from sharder._protocol import (
    CloseConnection,
    Debug,
    Fatal,
    GatewayProtocol,
    Phase,
    Reconnect,
    RequestIdentify,
    SendPayload,
)
from sharder._session import Session
from sharder.errors import GatewayClosedError, ProtocolViolation

TOKEN = "secret-token-value"
INTERVAL_MS = 10_000


def make(session: Session | None = None, jitter: float = 0.5) -> GatewayProtocol:
    return GatewayProtocol(
        token=TOKEN,
        intents=513,
        shard=(1, 4),
        properties={"os": "linux", "browser": "botrun", "device": "botrun"},
        large_threshold=100,
        presence={"status": "idle", "activities": [], "since": None, "afk": False},
        session=session,
        invalid_session_delay=(1.0, 5.0),
        rng=lambda: jitter,
    )


def sent(proto: GatewayProtocol) -> list[dict[str, Any]]:
    """Payloads queued for sending; clears the queue."""
    payloads = [a.payload for a in proto.actions if isinstance(a, SendPayload)]
    proto.actions.clear()
    return payloads


def hello(proto: GatewayProtocol, now: float = 0.0) -> None:
    proto.receive({"op": 10, "d": {"heartbeat_interval": INTERVAL_MS}}, now)


def dispatch(proto: GatewayProtocol, name: str, seq: int, data: Any = None) -> bool:
    return proto.receive_dispatch({"op": 0, "t": name, "s": seq, "d": data or {}})


def deadline(proto: GatewayProtocol) -> float | None:
    """The time by which ``handle_timer`` must run: the end of the timer window."""
    window = proto.get_timer_window()
    return None if window is None else window[1]


def ready(proto: GatewayProtocol, now: float = 0.0) -> None:
    proto.connection_made(now)
    hello(proto, now)
    assert isinstance(proto.actions[-1], RequestIdentify)
    proto.actions.clear()
    assert proto.identify_granted(now)
    proto.actions.clear()
    ready_data = {"session_id": "abc", "resume_gateway_url": "wss://resume.example"}
    assert dispatch(proto, "READY", 1, ready_data)


def test_identify_carries_every_field_after_hello() -> None:
    proto = make()
    proto.connection_made(0.0)
    hello(proto)
    assert proto.phase is Phase.AWAITING_IDENTIFY
    assert proto.actions == [RequestIdentify()]
    proto.actions.clear()
    assert proto.identify_granted(0.1)
    [identify] = sent(proto)
    assert identify["op"] == 2
    assert identify["d"] == {
        "token": TOKEN,
        "intents": 513,
        "properties": {"os": "linux", "browser": "botrun", "device": "botrun"},
        "shard": [1, 4],
        "compress": False,
        "large_threshold": 100,
        "presence": {"status": "idle", "activities": [], "since": None, "afk": False},
    }


def test_identify_description_never_contains_the_token() -> None:
    proto = make()
    proto.connection_made(0.0)
    hello(proto)
    proto.identify_granted(0.0)
    descriptions = [a.description for a in proto.actions if isinstance(a, SendPayload)]
    assert descriptions
    assert all(TOKEN not in d for d in descriptions)


def test_ready_stores_session_id_sequence_and_resume_url() -> None:
    proto = make()
    ready(proto)
    assert proto.session == Session("abc", 1, "wss://resume.example")
    assert proto.phase is Phase.READY


def test_first_heartbeat_is_jittered_then_regular() -> None:
    proto = make(jitter=0.3)
    ready(proto, now=100.0)
    assert deadline(proto) == pytest.approx(100.0 + 10.0 * 0.3)
    proto.handle_timer(103.0)
    assert sent(proto) == [{"op": 1, "d": 1}]
    assert deadline(proto) == pytest.approx(113.0)


def test_server_heartbeat_request_is_answered_at_once_without_moving_the_schedule() -> None:
    proto = make(jitter=0.3)
    ready(proto, now=0.0)
    due = deadline(proto)
    proto.receive({"op": 1, "d": None}, 1.0)
    assert sent(proto) == [{"op": 1, "d": 1}]
    assert deadline(proto) == due


def test_heartbeat_ack_measures_latency() -> None:
    proto = make(jitter=0.0)
    ready(proto)
    proto.handle_timer(0.0)
    sent(proto)
    proto.receive({"op": 11}, 0.25)
    assert proto.latency == pytest.approx(0.25)


def test_missing_ack_is_a_zombie_after_the_grace_period() -> None:
    proto = make(jitter=0.0)
    ready(proto)
    proto.handle_timer(0.0)  # beat 1
    sent(proto)
    proto.handle_timer(10.0)  # beat 2 due, no ACK: grace starts
    assert not proto.actions
    grace_end = deadline(proto)
    assert grace_end == pytest.approx(10.0 + 2.5)
    proto.handle_timer(grace_end)
    [close] = proto.actions
    assert isinstance(close, CloseConnection)
    assert close.code not in (1000, 1001)
    outcome = proto.connection_lost(None)
    assert outcome == Reconnect(True, 0.0, close.reason)


def test_ack_during_grace_sends_the_overdue_heartbeat_at_once() -> None:
    proto = make(jitter=0.0)
    ready(proto)
    proto.handle_timer(0.0)
    sent(proto)
    proto.handle_timer(10.0)
    proto.receive({"op": 11}, 10.5)
    assert sent(proto) == [{"op": 1, "d": 1}]
    assert deadline(proto) == pytest.approx(20.5)


def test_late_timer_extends_grace_by_the_lag() -> None:
    """A loop blocked for 30 s must not judge the ACK sitting in the socket buffer."""
    proto = make(jitter=0.0)
    ready(proto)
    proto.handle_timer(0.0)
    sent(proto)
    proto.handle_timer(40.0)  # fired 30 s late
    assert deadline(proto) == pytest.approx(40.0 + 2.5 + 30.0)
    proto.receive({"op": 11}, 40.01)
    assert sent(proto) == [{"op": 1, "d": 1}]


def test_payloads_received_during_grace_prove_the_link_alive() -> None:
    proto = make(jitter=0.0)
    ready(proto)
    proto.handle_timer(0.0)
    sent(proto)
    proto.handle_timer(10.0)
    dispatch(proto, "MESSAGE_CREATE", 2)
    proto.handle_timer(12.5)
    assert not any(isinstance(a, CloseConnection) for a in proto.actions)
    proto.handle_timer(15.0)
    assert any(isinstance(a, CloseConnection) for a in proto.actions)


def test_no_zombie_verdict_while_reading_is_paused() -> None:
    proto = make(jitter=0.0)
    ready(proto)
    proto.handle_timer(0.0)
    sent(proto)
    proto.paused = True
    for now in (10.0, 12.5, 15.0, 17.5):
        proto.handle_timer(now)
    assert not any(isinstance(a, CloseConnection) for a in proto.actions)


def test_replayed_duplicates_are_not_delivered_twice() -> None:
    proto = make()
    ready(proto)
    assert dispatch(proto, "MESSAGE_CREATE", 2)
    assert dispatch(proto, "MESSAGE_CREATE", 3)
    assert not dispatch(proto, "MESSAGE_CREATE", 3)
    assert not dispatch(proto, "MESSAGE_CREATE", 2)
    assert proto.sequence == 3


def test_skipped_dispatch_still_advances_the_sequence() -> None:
    proto = make()
    ready(proto)
    proto.skip_dispatches(1, 2)
    assert proto.sequence == 2
    proto.skip_dispatches(1, 1)  # a replayed duplicate never moves it back
    assert proto.sequence == 2


@pytest.mark.parametrize(
    ("start", "seqs"),
    [(None, [5, 6, 7]), (10, [11, 12]), (10, [8, 9]), (10, [9, 12, 11]), (3, [3])],
)
def test_a_run_of_skipped_dispatches_moves_the_sequence_to_its_highest_never_back(
    start: int | None, seqs: list[int]
) -> None:
    proto = make()
    proto.sequence = start
    proto.connection_made(0.0)
    proto.skip_dispatches(len(seqs), max(seqs))
    assert proto.sequence == max(seqs if start is None else [start, *seqs])
    assert proto.received == len(seqs)
    # Counted as dispatches too: a RESUMED after them reports them as replayed.
    payload: dict[str, Any] = {"op": 0, "t": "RESUMED", "s": 100, "d": {}}
    assert proto.receive_dispatch(payload)
    assert payload["d"]["replayed"] == len(seqs)


def test_session_resumes_after_hello_with_the_last_sequence() -> None:
    proto = make(session=Session("abc", 41, "wss://resume"))
    proto.connection_made(0.0)
    hello(proto)
    [resume] = sent(proto)
    assert resume == {"op": 6, "d": {"token": TOKEN, "session_id": "abc", "seq": 41}}
    assert proto.phase is Phase.RESUMING


def test_resumed_reports_how_many_events_were_replayed() -> None:
    proto = make(session=Session("abc", 41, None))
    proto.connection_made(0.0)
    hello(proto)
    sent(proto)
    for seq in (42, 43, 44):
        assert dispatch(proto, "MESSAGE_CREATE", seq)
    payload: dict[str, Any] = {"op": 0, "t": "RESUMED", "s": 45, "d": {}}
    assert proto.receive_dispatch(payload)
    assert payload["d"]["replayed"] == 3
    assert proto.phase is Phase.READY


def test_op7_closes_resumably_and_resumes() -> None:
    proto = make()
    ready(proto)
    proto.receive({"op": 7, "d": None}, 1.0)
    [close] = proto.actions
    assert isinstance(close, CloseConnection)
    assert close.code not in (1000, 1001)
    outcome = proto.connection_lost(None)
    assert isinstance(outcome, Reconnect)
    assert outcome.resume


def test_op7_before_hello_just_reconnects() -> None:
    proto = make()
    proto.connection_made(0.0)
    proto.receive({"op": 7, "d": None}, 0.1)
    assert isinstance(proto.actions[-1], CloseConnection)
    outcome = proto.connection_lost(None)
    assert isinstance(outcome, Reconnect)
    assert not outcome.resume


def test_invalid_session_resumable_resumes_on_the_same_socket() -> None:
    proto = make()
    ready(proto)
    dispatch(proto, "MESSAGE_CREATE", 5)
    proto.receive({"op": 9, "d": True}, 2.0)
    payloads = sent(proto)
    assert payloads == [{"op": 6, "d": {"token": TOKEN, "session_id": "abc", "seq": 5}}]
    assert proto.phase is Phase.RESUMING


def test_invalid_session_not_resumable_identifies_after_one_to_five_seconds() -> None:
    proto = make(jitter=0.5)
    ready(proto)
    proto.receive({"op": 9, "d": False}, 2.0)
    assert isinstance(proto.actions[-1], CloseConnection)
    outcome = proto.connection_lost(None)
    assert outcome == Reconnect(False, 3.0, "invalid session: identifying anew")
    assert proto.session is None


@pytest.mark.parametrize(
    ("code", "resume"),
    [
        (None, True),
        (1000, True),
        (1001, True),
        (1006, True),
        (4000, True),
        (4001, True),
        (4002, True),
        (4005, True),
        (4008, True),
        (4003, False),
        (4007, False),
        (4009, False),
    ],
)
def test_close_code_table_reconnects(code: int | None, resume: bool) -> None:
    proto = make()
    ready(proto)
    outcome = proto.connection_lost(code, "reason")
    assert isinstance(outcome, Reconnect)
    assert outcome.resume is resume
    assert (proto.session is not None) is resume


@pytest.mark.parametrize("code", [4004, 4010, 4011, 4012, 4013, 4014])
def test_close_code_table_fatal_codes_stop(code: int) -> None:
    proto = make()
    ready(proto)
    outcome = proto.connection_lost(code, "nope")
    assert isinstance(outcome, Fatal)
    assert isinstance(outcome.error, GatewayClosedError)
    assert outcome.error.code == code
    assert TOKEN not in str(outcome.error)


def test_hello_timeout_reconnects() -> None:
    proto = make()
    proto.connection_made(0.0)
    assert deadline(proto) == pytest.approx(20.0)
    proto.handle_timer(20.0)
    assert isinstance(proto.actions[-1], CloseConnection)


def test_ready_timeout_identifies_again() -> None:
    proto = make()
    proto.connection_made(0.0)
    hello(proto)
    proto.actions.clear()
    proto.identify_granted(1.0)
    proto.actions.clear()
    proto.handle_timer(16.0)
    assert isinstance(proto.actions[-1], CloseConnection)
    outcome = proto.connection_lost(None)
    assert isinstance(outcome, Reconnect)
    assert not outcome.resume


def test_long_replay_is_not_a_stuck_resume() -> None:
    proto = make(session=Session("abc", 1, None), jitter=1.0)
    proto.connection_made(0.0)
    hello(proto)
    proto.actions.clear()
    dispatch(proto, "MESSAGE_CREATE", 2)
    proto.handle_timer(15.0)
    assert not any(isinstance(a, CloseConnection) for a in proto.actions)


def test_repeated_failed_resumes_fall_back_to_identify() -> None:
    proto = make(session=Session("abc", 1, None))
    for _ in range(2):
        proto.connection_made(0.0)
        hello(proto)
        proto.actions.clear()
        outcome = proto.connection_lost(None)
    assert isinstance(outcome, Reconnect)
    assert proto.session is None
    assert any(isinstance(a, Debug) for a in proto.actions)


@pytest.mark.parametrize(
    "payload",
    [
        {"op": 10, "d": None},
        {"op": 10, "d": {"heartbeat_interval": "soon"}},
        {"op": 10, "d": {"heartbeat_interval": -5}},
        {"op": 0, "t": "MESSAGE_CREATE", "s": "7", "d": {}},
        {"op": 0, "t": 5, "s": 7, "d": {}},
        {"op": 0, "t": "READY", "s": 1, "d": {"session_id": 42}},
    ],
)
def test_malformed_known_fields_raise_protocol_violation(payload: dict[str, Any]) -> None:
    proto = make()
    proto.connection_made(0.0)
    with pytest.raises(ProtocolViolation):
        proto.receive(payload, 0.0)


def test_unknown_opcode_is_ignored_with_a_debug_line() -> None:
    proto = make()
    ready(proto)
    assert not proto.receive({"op": 99, "d": None}, 1.0)
    assert isinstance(proto.actions[-1], Debug)


def test_identify_grant_for_a_lost_connection_is_refused() -> None:
    proto = make()
    proto.connection_made(0.0)
    hello(proto)
    proto.connection_lost(None)
    assert not proto.identify_granted(1.0)
