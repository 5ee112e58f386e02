"""``RestClient`` against ``FakeDiscord`` over real HTTP on loopback: limits, faults, errors."""

from __future__ import annotations

import math
from collections import defaultdict

import anyio
import httpx
import pytest

from runtime.rest import (
    HTTPError,
    NetworkError,
    RestClient,
    TokenRejectedError,
    Unauthorized,
)
from sharder.testing import FakeDiscord
from sharder.testing._rest_limits import RestFault, RestLimits

TOKEN = "emulator-test-token"
MESSAGES = "POST /channels/{channel_id}/messages"


def rest_for(discord: FakeDiscord, token: str = TOKEN, **options: float) -> RestClient:
    options.setdefault("backoff_base", 0.01)
    return RestClient(token, api_base=discord.api_base, **options)  # type: ignore[arg-type]


def test_emulated_route_limits_count_per_major_parameter() -> None:
    limits = RestLimits(wall_clock=lambda: 1_700_000_000.0)
    limits.set_route_limit(MESSAGES, 2, 1.0, None)
    assert [limits.admit(MESSAGES, "1", 0.0).status for _ in range(3)] == [None, None, 429]
    assert limits.admit(MESSAGES, "2", 0.1).status is None  # another channel
    assert limits.admit(MESSAGES, "1", 1.0).status is None  # a new window
    headers = dict(limits.admit(MESSAGES, "1", 1.5).headers)
    assert headers["x-ratelimit-remaining"] == "0"
    assert headers["x-ratelimit-reset-after"] == "0.500"
    assert headers["x-ratelimit-reset"] == "1700000001.000"
    assert limits.rate_limited == 1


def test_an_injected_429_blocks_its_bucket_or_everything_for_retry_after() -> None:
    limits = RestLimits()
    limits.inject(RestFault(MESSAGES, 1, 429, retry_after=0.5))
    first = limits.admit(MESSAGES, "1", 0.0)
    assert (first.status, first.body and first.body["retry_after"]) == (429, 0.5)
    assert limits.admit(MESSAGES, "1", 0.4).status == 429  # too early
    assert limits.admit(MESSAGES, "2", 0.4).status is None  # another channel
    assert limits.admit(MESSAGES, "1", 0.5).status is None
    limits.inject(RestFault(None, 1, 429, retry_after=1.0, is_global=True))
    assert dict(limits.admit("GET /users/@me", "", 2.0).headers)["x-ratelimit-global"] == "true"
    assert limits.admit(MESSAGES, "3", 2.9).status == 429
    assert limits.admit(MESSAGES, "3", 3.0).status is None
    assert limits.rate_limited == 4


def test_an_emulated_global_limit_is_a_sliding_window() -> None:
    limits = RestLimits()
    limits.set_global_limit(2, 1.0)
    assert [limits.admit(MESSAGES, str(n), 0.0).status for n in range(3)] == [None, None, 429]
    assert limits.admit(MESSAGES, "9", 0.99).status == 429
    assert limits.admit(MESSAGES, "9", 1.0).status is None


async def test_the_emulator_refuses_a_naive_burst_over_a_route_limit() -> None:
    """Without this, a run with zero 429s would prove nothing."""
    async with FakeDiscord(token=TOKEN) as discord, httpx.AsyncClient() as http:
        discord.set_route_limit(MESSAGES, limit=5, per=1.0)
        statuses: list[int] = []

        async def post() -> None:
            response = await http.post(
                f"{discord.api_base}/channels/1/messages",
                json={"content": "x"},
                headers={"Authorization": f"Bot {TOKEN}"},
            )
            statuses.append(response.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(post)
    assert sorted(statuses) == [200] * 5 + [429] * 3
    assert discord.rest_429s == 3


async def test_every_routed_response_carries_rate_limit_headers() -> None:
    async with FakeDiscord(token=TOKEN) as discord, httpx.AsyncClient() as http:
        discord.set_route_limit(MESSAGES, limit=5, per=2.0)
        auth = {"Authorization": f"Bot {TOKEN}"}
        me = await http.get(f"{discord.api_base}/users/@me", headers=auth)
        sent = await http.post(
            f"{discord.api_base}/channels/7/messages", json={"content": "x"}, headers=auth
        )
    for response in (me, sent):
        for name in ("limit", "remaining", "reset", "reset-after", "bucket"):
            assert f"x-ratelimit-{name}" in response.headers
    assert (sent.headers["x-ratelimit-limit"], sent.headers["x-ratelimit-remaining"]) == ("5", "4")
    assert 1.9 < float(sent.headers["x-ratelimit-reset-after"]) <= 2.0


async def test_a_hundred_messages_to_five_channels_go_as_fast_as_the_limit_allows() -> None:
    channels, per_channel, limit, per = 5, 20, 5, 1.0
    # Five go at once in each window, and a window opens when the last one ends.
    minimum = (math.ceil(per_channel / limit) - 1) * per
    sent: dict[int, list[str]] = defaultdict(list)

    async def post(rest: RestClient, channel: int, content: str) -> None:
        sent[channel].append(content)  # no await before the request joins its queue
        await rest.post(f"/channels/{channel}/messages", {"content": content})

    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord) as rest:
        discord.set_route_limit(MESSAGES, limit=limit, per=per)
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for n in range(channels * per_channel):
                tg.start_soon(post, rest, 100 + n % channels, f"message {n}")
        elapsed = anyio.current_time() - start
    assert discord.rest_429s == 0
    assert 0.9 * minimum <= elapsed <= 1.1 * minimum
    received: dict[int, list[str]] = defaultdict(list)
    for message in discord.messages:
        received[message.channel_id].append(message.body["content"])
    assert received == sent


async def test_a_forced_429_is_retried_after_retry_after() -> None:
    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord) as rest:
        discord.inject_rest_fault(status=429, retry_after=0.3, route=MESSAGES)
        start = anyio.current_time()
        message = await rest.post("/channels/1/messages", {"content": "late"})
        elapsed = anyio.current_time() - start
        assert rest.invalid_requests == {"botrun": 1}
    assert message["content"] == "late"
    assert elapsed >= 0.3
    assert discord.rest_429s == 1  # an early retry would have been refused again
    assert [m.body["content"] for m in discord.messages] == ["late"]


async def test_a_global_429_pauses_every_route() -> None:
    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord) as rest:
        discord.inject_rest_fault(status=429, retry_after=0.3, global_=True)
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rest.post, "/channels/1/messages", {"content": "first"})
            await anyio.sleep(0.05)
            tg.start_soon(rest.post, "/channels/2/messages", {"content": "second"})
    assert discord.rest_429s == 1
    assert sorted(m.body["content"] for m in discord.messages) == ["first", "second"]
    assert all(message.time - start >= 0.3 for message in discord.messages)


async def test_a_global_limit_is_never_exceeded() -> None:
    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord, global_limit=18) as rest:
        discord.set_global_limit(20, per=1.0)
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for channel in range(30):
                tg.start_soon(rest.post, f"/channels/{channel}/messages", {"content": "x"})
        elapsed = anyio.current_time() - start
    assert discord.rest_429s == 0
    assert 1.0 <= elapsed < 1.5


async def test_a_503_then_success_is_retried() -> None:
    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord) as rest:
        discord.inject_rest_fault(status=503, count=2)
        message = await rest.post("/channels/1/messages", {"content": "after two 503s"})
    assert message["content"] == "after two 503s"
    assert len(discord.messages) == 1


async def test_a_dropped_post_is_not_sent_twice_but_a_dropped_get_is_retried() -> None:
    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord) as rest:
        discord.inject_rest_fault(drop=True, route=MESSAGES)
        with pytest.raises(NetworkError):
            await rest.post("/channels/1/messages", {"content": "once"})
        discord.inject_rest_fault(drop=True, route="GET /users/@me")
        me = await rest.get("/users/@me")
    assert [m.body["content"] for m in discord.messages] == ["once"]  # executed, not repeated
    assert me["bot"] is True


async def test_an_empty_message_raises_http_error_50006() -> None:
    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord) as rest:
        with pytest.raises(HTTPError) as caught:
            await rest.post("/channels/1/messages", {"content": ""})
    assert (caught.value.status, caught.value.code) == (400, 50006)
    assert caught.value.message == "Cannot send an empty message"
    assert discord.messages == []


async def test_a_too_long_message_raises_http_error_with_the_form_errors() -> None:
    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord) as rest:
        with pytest.raises(HTTPError) as caught:
            await rest.post("/channels/1/messages", {"content": "x" * 2001})
    assert (caught.value.status, caught.value.code) == (400, 50035)
    assert caught.value.errors is not None
    assert caught.value.errors["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"


async def test_files_reach_the_emulator_as_attachments() -> None:
    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord) as rest:
        created = await rest.post(
            "/channels/1/messages",
            {"content": "see attached"},
            files=[("notes.txt", b"hello", "text/plain")],
        )
    [message] = discord.messages
    assert message.body == {"content": "see attached"}
    assert message.files == (("notes.txt", b"hello"),)
    assert created["attachments"][0]["filename"] == "notes.txt"


async def test_a_wrong_token_raises_unauthorized_then_stops_sending() -> None:
    async with FakeDiscord(token=TOKEN) as discord, rest_for(discord, "wrong-token") as rest:
        with pytest.raises(Unauthorized, match="the bot token was rejected"):
            await rest.get_gateway_bot()
        with pytest.raises(TokenRejectedError):
            await rest.post("/channels/1/messages", {"content": "x"})
        assert rest.invalid_requests == {"botrun": 1}
    assert discord.messages == []


async def test_get_gateway_bot_reads_the_emulators_gateway() -> None:
    async with FakeDiscord(token=TOKEN, shards=3) as discord, rest_for(discord) as rest:
        info = await rest.get_gateway_bot()
    assert info["url"] == discord.gateway_url
    assert info["shards"] == 3
