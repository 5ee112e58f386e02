"""The REST client against ``httpx.MockTransport``: routes, buckets, retries, errors.

Timing tests use real time with delays of tens of milliseconds; long waits run
on trio's virtual clock (``TestVirtualTime``).
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import trio.testing

from runtime.rest import (
    FileSpec,
    Forbidden,
    HTTPError,
    NetworkError,
    NotFound,
    RestClient,
    RestError,
    TokenRejectedError,
    Unauthorized,
    route_for,
)
from runtime.rest._buckets import (
    BucketState,
    GlobalLimiter,
    InvalidRequestCounter,
    RateLimitHeaders,
    RetryAfter,
)
from runtime.rest._retry import backoff_delay, may_retry_error, may_retry_status

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.s3cr3t-t0k3n-v4lu3"
BASE = "https://discord.test/api/v10"

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def client(handler: Handler, **options: Any) -> RestClient:
    options.setdefault("backoff_base", 0.01)
    return RestClient(TOKEN, api_base=BASE, transport=httpx.MockTransport(handler), **options)


def limits(bucket: str, remaining: int, reset_after: float, limit: int = 5) -> dict[str, str]:
    return {
        "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset-After": str(reset_after),
        "X-RateLimit-Reset": "1700000000.000",
    }


def too_many(retry_after: float, *, is_global: bool = False, scope: str = "user") -> httpx.Response:
    headers = {"Retry-After": str(retry_after), "X-RateLimit-Scope": scope}
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    body = {"message": "You are being rate limited.", "retry_after": retry_after}
    return httpx.Response(429, json={**body, "global": is_global}, headers=headers)


def channel_of(request: httpx.Request) -> str:
    return request.url.path.split("/")[4]


# ------------------------------------------------------------------ route keys


@pytest.mark.parametrize(
    ("method", "path", "key", "major"),
    [
        ("POST", "/channels/10/messages", "POST /channels/{channel_id}/messages", "10"),
        ("GET", "/channels/10/messages/7", "GET /channels/{channel_id}/messages/{id}", "10"),
        ("GET", "/channels/10/messages/8", "GET /channels/{channel_id}/messages/{id}", "10"),
        ("GET", "/guilds/4/members/9", "GET /guilds/{guild_id}/members/{id}", "4"),
        ("PATCH", "/guilds/4/roles/5", "PATCH /guilds/{guild_id}/roles/{id}", "4"),
        ("GET", "/users/@me", "GET /users/@me", ""),
        ("GET", "/gateway/bot", "GET /gateway/bot", ""),
        ("GET", "/users/42", "GET /users/{id}", ""),
        ("PATCH", "/webhooks/6", "PATCH /webhooks/{webhook_id}", "6"),
        (
            "POST",
            "/webhooks/6/tok3n?wait=true",
            "POST /webhooks/{webhook_id}/{webhook_token}",
            "6/tok3n",
        ),
        (
            "POST",
            "/interactions/3/itok/callback",
            "POST /interactions/{id}/{interaction_token}/callback",
            "",
        ),
        (
            "PUT",
            "/channels/10/messages/7/reactions/%F0%9F%91%8D/@me",
            "PUT /channels/{channel_id}/messages/{id}/reactions/{reaction}",
            "10",
        ),
        ("GET", "/invites/abcdef", "GET /invites/{invite_code}", ""),
    ],
)
def test_route_key_keeps_major_parameters_and_replaces_other_ids(
    method: str, path: str, key: str, major: str
) -> None:
    route = route_for(method, path)
    assert (route.key, route.major) == (key, major)


def test_routes_of_different_channels_queue_separately() -> None:
    first = route_for("POST", "/channels/1/messages")
    second = route_for("POST", "/channels/2/messages")
    assert first.key == second.key
    assert first.queue != second.queue


def test_webhook_and_interaction_tokens_are_hidden_from_route_paths() -> None:
    webhook = route_for("POST", "/webhooks/6/s3cret/messages/@original")
    interaction = route_for("POST", "/interactions/3/s3cret/callback")
    assert webhook.path == "/webhooks/6/***/messages/@original"
    assert interaction.path == "/interactions/3/***/callback"
    assert "s3cret" not in repr(webhook) + repr(interaction)
    assert webhook.token_auth
    assert interaction.token_auth


# ------------------------------------------------------- pure bookkeeping


def test_bucket_state_counts_down_then_waits_for_the_reset() -> None:
    state = BucketState()
    assert state.acquire(0.0) == 0.0  # unknown: the first request goes
    state.update(RateLimitHeaders("b", 2, 1, 1.0, 100.0), now=0.0)
    assert state.acquire(0.1) == 0.0
    assert state.acquire(0.2) == pytest.approx(0.8)
    assert state.acquire(1.0) == 0.0  # window over: a fresh one is assumed
    assert state.remaining == 1


def test_bucket_state_keeps_the_lowest_remaining_within_one_window() -> None:
    state = BucketState()
    state.update(RateLimitHeaders("b", 5, 3, 1.0, 100.0), now=0.0)
    state.update(RateLimitHeaders("b", 5, 4, 0.9, 100.0), now=0.1)  # a late, stale answer
    assert state.remaining == 3
    state.update(RateLimitHeaders("b", 5, 4, 1.0, 101.0), now=1.1)  # a new window
    assert state.remaining == 4


def test_bucket_pause_blocks_until_retry_after() -> None:
    state = BucketState()
    state.pause(2.0, now=10.0)
    assert state.acquire(11.0) == pytest.approx(1.0)
    assert state.acquire(12.0) == 0.0


def test_global_limiter_frees_a_slot_one_period_after_its_answer() -> None:
    limiter = GlobalLimiter(rate=2, period=1.0)
    assert [limiter.acquire(0.0), limiter.acquire(0.0)] == [0.0, 0.0]
    assert limiter.acquire(0.1) is None  # both in flight: wait for an answer
    limiter.release(0.2)
    assert limiter.acquire(0.3) == pytest.approx(0.9)
    assert limiter.acquire(1.2) == 0.0
    limiter.release(1.3)
    limiter.release(1.3)
    limiter.pause(5.0, now=1.5)
    assert limiter.acquire(2.5) == pytest.approx(4.0)
    assert limiter.acquire(6.5) == 0.0


def test_parse_headers_needs_a_bucket_and_numbers() -> None:
    assert RateLimitHeaders.parse({}) is None
    garbled = {"x-ratelimit-bucket": "b", "x-ratelimit-limit": "x"}
    assert RateLimitHeaders.parse(garbled) is None
    parsed = RateLimitHeaders.parse({k.lower(): v for k, v in limits("b", 0, 0.25).items()})
    assert parsed == RateLimitHeaders("b", 5, 0, 0.25, 1700000000.0)


def test_retry_after_prefers_the_body_and_reads_the_global_flag() -> None:
    headers = {"retry-after": "3", "x-ratelimit-global": "true", "x-ratelimit-scope": "global"}
    retry = RetryAfter.parse(headers, {"retry_after": 0.25, "global": True})
    assert retry == RetryAfter(0.25, True, "global")
    assert RetryAfter.parse({"retry-after": "2"}, None) == RetryAfter(2.0, False, "user")
    assert RetryAfter.parse({}, {"global": True}).is_global


def test_invalid_request_counter_slides_and_reports_thresholds() -> None:
    counter = InvalidRequestCounter(window=10.0, thresholds=(2, 3))
    assert counter.add("a", 0.0) is None
    assert counter.add("a", 1.0) == 2
    assert counter.add("b", 1.0) is None
    assert counter.counts(5.0) == {"a": 2, "b": 1}
    assert counter.counts(10.5) == {"a": 1, "b": 1}
    assert counter.counts(20.0) == {}


def test_retry_rule_never_repeats_a_post_that_may_have_been_executed() -> None:
    sent = httpx.ReadError("connection dropped")
    unsent = httpx.ConnectError("refused")
    assert may_retry_error("GET", sent)
    assert may_retry_error("DELETE", sent)
    assert not may_retry_error("POST", sent)
    assert not may_retry_error("PATCH", httpx.ReadTimeout(""))
    assert may_retry_error("POST", unsent)
    assert may_retry_error("PATCH", httpx.PoolTimeout(""))
    assert may_retry_status("POST", 503)
    assert not may_retry_status("POST", 504)
    assert may_retry_status("PUT", 504)
    assert not may_retry_status("GET", 500)


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    assert backoff_delay(1, 0.5, 4.0, rng=lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 4.0, rng=lambda: 1.0) == 2.0
    assert backoff_delay(10, 0.5, 4.0, rng=lambda: 1.0) == 4.0
    assert backoff_delay(10, 0.5, 4.0, rng=lambda: 0.0) == 2.0


# -------------------------------------------------- construction and headers


async def test_requests_carry_bot_authorization_and_a_discordbot_user_agent() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "1"})

    async with client(handler, user_agent="mybot/2") as rest:
        assert await rest.get("/users/@me") == {"id": "1"}
    headers = seen[0].headers
    assert headers["authorization"] == f"Bot {TOKEN}"
    agent = headers["user-agent"]
    assert agent.startswith("DiscordBot (https://github.com/botrun/botrun, ")
    assert agent.endswith(") mybot/2")
    assert str(seen[0].url) == f"{BASE}/users/@me"


@pytest.mark.parametrize("base", ["http://discord.com/api/v10", "http://10.0.0.5:8080/api/v10"])
def test_plain_http_to_a_remote_host_is_refused(base: str) -> None:
    host = httpx.URL(base).host
    with pytest.raises(ValueError, match=host):
        RestClient(TOKEN, api_base=base)
    RestClient(TOKEN, api_base=base, allow_insecure=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_plain_http_to_loopback_is_allowed_for_the_emulator(host: str) -> None:
    rest = RestClient(TOKEN, api_base=f"http://{host}:8080/api/v10")
    assert rest.api_base == f"http://{host}:8080/api/v10"


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        RestClient("  ")


async def test_reason_is_sent_url_encoded_in_the_audit_log_header() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async with client(handler) as rest:
        result = await rest.delete("/channels/1/messages/2", reason="spam: «bad» links/ads")
    assert result is None
    assert seen[0].headers["x-audit-log-reason"] == ("spam%3A%20%C2%ABbad%C2%BB%20links/ads")


async def test_files_are_sent_as_multipart_with_payload_json() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "9"})

    async with client(handler) as rest:
        files: list[FileSpec] = [
            ("a.txt", b"hello"),
            ("b.png", io.BytesIO(b"\x89PNG"), "image/png"),
        ]
        await rest.post("/channels/1/messages", {"content": "two files"}, files=files)
    request = seen[0]
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    body = request.content
    assert b'Content-Disposition: form-data; name="payload_json"\r\n' in body
    assert b'Content-Type: application/json\r\n\r\n{"content":"two files"}\r\n' in body
    assert b'name="files[0]"; filename="a.txt"' in body
    assert b'name="files[1]"; filename="b.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG' in body


async def test_json_may_be_passed_positionally_and_params_become_the_query() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    async with client(handler) as rest:
        await rest.post("/channels/1/messages", {"content": "hi"})
        await rest.get("/channels/1/messages", params={"limit": 5, "before": "9"})
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].content == b'{"content":"hi"}'
    assert seen[1].url.query == b"limit=5&before=9"


async def test_get_gateway_bot_returns_the_object() -> None:
    info = {"url": "wss://gateway.discord.gg", "shards": 1, "session_start_limit": {}}

    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v10/gateway/bot"
        return httpx.Response(200, json=info)

    async with client(handler) as rest:
        assert await rest.get_gateway_bot() == info


# ------------------------------------------------------------ rate limits


async def test_remaining_zero_waits_until_reset_after() -> None:
    times: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        return httpx.Response(200, json={}, headers=limits("msg", 0, 0.15))

    async with client(handler) as rest:
        await rest.post("/channels/1/messages", {"content": "a"})
        await rest.post("/channels/1/messages", {"content": "b"})
    assert times[1] - times[0] >= 0.15


async def test_routes_sharing_a_bucket_hash_share_one_count() -> None:
    times: dict[str, float] = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        times[f"{request.method} {len(times)}"] = anyio.current_time()
        remaining = 1 if request.method == "GET" and len(times) == 1 else 0
        return httpx.Response(200, json={}, headers=limits("shared", remaining, 0.15))

    async with client(handler) as rest:
        await rest.get("/channels/1")  # learns: bucket "shared", one left
        await rest.patch("/channels/1", {"name": "x"})  # same hash: now none left
        await rest.get("/channels/1")  # must wait for the shared reset
    assert times["GET 2"] - times["PATCH 1"] >= 0.15


async def test_the_same_bucket_on_another_channel_is_not_delayed() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={}, headers=limits("msg", 0, 5.0))

    async with client(handler) as rest:
        await rest.post("/channels/1/messages", {"content": "a"})
        with anyio.fail_after(1.0):
            await rest.post("/channels/2/messages", {"content": "b"})


async def test_different_buckets_are_sent_in_parallel() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.1)
        return httpx.Response(200, json={}, headers=limits("msg", 4, 1.0))

    async with client(handler) as rest:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for channel in range(10):
                tg.start_soon(rest.post, f"/channels/{channel}/messages", {"content": "x"})
        assert anyio.current_time() - start < 0.35


async def test_a_waiting_bucket_does_not_hold_up_other_buckets() -> None:
    done: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={}, headers=limits(channel_of(request), 0, 0.3))

    async def post(rest: RestClient, channel: int) -> None:
        await rest.post(f"/channels/{channel}/messages", {"content": "x"})
        done.append(str(channel))

    async with client(handler) as rest:
        await post(rest, 1)  # channel 1 now waits 0.3 s
        async with anyio.create_task_group() as tg:
            tg.start_soon(post, rest, 1)
            await anyio.sleep(0.01)
            tg.start_soon(post, rest, 2)
    assert done == ["1", "2", "1"]


async def test_requests_of_one_bucket_reach_discord_in_call_order() -> None:
    called: list[int] = []
    received: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(random.uniform(0.0, 0.005))
        received.append(int(request.url.params["n"]))
        return httpx.Response(200, json={}, headers=limits("msg", 49, 1.0, limit=50))

    async def post(rest: RestClient, n: int) -> None:
        await anyio.sleep(random.uniform(0.0, 0.01))
        called.append(n)
        await rest.post("/channels/1/messages", {"content": "x"}, params={"n": n})

    async with client(handler) as rest, anyio.create_task_group() as tg:
        for n in range(30):
            tg.start_soon(post, rest, n)
    assert received == called


async def test_a_burst_to_a_fresh_route_learns_the_limit_before_overflowing_it() -> None:
    in_flight = 0
    max_in_flight = 0
    statuses: list[int] = []
    window_start = -1.0
    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, max_in_flight, window_start, count
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        await anyio.sleep(0.001)
        in_flight -= 1
        now = anyio.current_time()
        if now >= window_start + 0.1:
            window_start, count = now, 0
        count += 1
        if count > 5:
            statuses.append(429)
            return too_many(window_start + 0.1 - now)
        statuses.append(200)
        reset_after = window_start + 0.1 - now
        return httpx.Response(200, json={}, headers=limits("msg", 5 - count, reset_after))

    async with client(handler) as rest, anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(rest.post, "/channels/1/messages", {"content": "x"})
    assert statuses == [200] * 20
    assert max_in_flight == 1


async def test_a_route_without_rate_limit_headers_is_not_serialized() -> None:
    in_flight = 0
    max_in_flight = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, max_in_flight
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        await anyio.sleep(0.02)
        in_flight -= 1
        return httpx.Response(200, json={})

    async with client(handler) as rest:
        await rest.get("/users/@me")  # learns: no bucket
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(rest.get, "/users/@me")
    assert max_in_flight == 10


async def test_a_429_pauses_only_its_bucket_then_retries() -> None:
    arrivals: list[tuple[str, float]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        channel = channel_of(request)
        arrivals.append((channel, anyio.current_time()))
        if channel == "1" and len(arrivals) == 1:
            return too_many(0.2)
        return httpx.Response(200, json={})

    async with client(handler) as rest, anyio.create_task_group() as tg:
        tg.start_soon(rest.post, "/channels/1/messages", {"content": "x"})
        await anyio.sleep(0.02)
        tg.start_soon(rest.post, "/channels/2/messages", {"content": "y"})
    (first, t0), (other, t1), (retry, t2) = arrivals
    assert (first, other, retry) == ("1", "2", "1")
    assert t1 - t0 < 0.15
    assert t2 - t0 >= 0.2


async def test_a_global_429_pauses_every_route() -> None:
    arrivals: list[tuple[str, float]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        arrivals.append((channel_of(request), anyio.current_time()))
        if len(arrivals) == 1:
            return too_many(0.2, is_global=True, scope="global")
        return httpx.Response(200, json={})

    async with client(handler) as rest, anyio.create_task_group() as tg:
        tg.start_soon(rest.post, "/channels/1/messages", {"content": "x"})
        await anyio.sleep(0.02)
        tg.start_soon(rest.post, "/channels/2/messages", {"content": "y"})
    start = arrivals[0][1]
    assert sorted(channel for channel, _ in arrivals[1:]) == ["1", "2"]
    assert all(t - start >= 0.2 for _, t in arrivals[1:])


async def test_429s_are_retried_at_most_max_retries_times() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return too_many(0.001)

    async with client(handler, max_retries=2) as rest:
        with pytest.raises(HTTPError) as caught:
            await rest.get("/users/@me")
    assert caught.value.status == 429
    assert calls == 3


# ---------------------------------------------------------------- retries


async def test_a_503_is_retried_and_the_success_returned() -> None:
    statuses = iter([503, 503, 200])

    async def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        return httpx.Response(status, json={"id": "1"} if status == 200 else None)

    async with client(handler) as rest:
        assert await rest.post("/channels/1/messages", {"content": "x"}) == {"id": "1"}


async def test_a_post_is_not_retried_after_its_connection_dropped() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadError("connection reset by peer")

    async with client(handler) as rest:
        with pytest.raises(NetworkError, match="ReadError") as caught:
            await rest.post("/channels/1/messages", {"content": "x"})
    assert calls == 1
    assert isinstance(caught.value.__cause__, httpx.ReadError)


async def test_a_get_is_retried_after_its_connection_dropped() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.RemoteProtocolError("server disconnected")
        return httpx.Response(200, json={"ok": True})

    async with client(handler) as rest:
        assert await rest.get("/users/@me") == {"ok": True}
    assert calls == 2


async def test_a_connect_error_is_retried_even_for_a_post() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json={"id": "5"})

    async with client(handler) as rest:
        assert await rest.post("/channels/1/messages", {"content": "x"}) == {"id": "5"}
    assert calls == 3


async def test_a_network_error_is_raised_once_retries_run_out() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async with client(handler, max_retries=1) as rest:
        with pytest.raises(NetworkError, match="connection refused"):
            await rest.get("/users/@me")


async def test_a_read_timeout_is_not_repeated_for_a_post() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("timed out")

    async with client(handler, timeout=0.05) as rest:
        with pytest.raises(NetworkError, match=r"ReadTimeout: nothing for 0\.05 s"):
            await rest.post("/channels/1/messages", {"content": "x"})
    assert calls == 1


async def test_a_server_that_never_answers_times_out_and_a_get_is_retried() -> None:
    accepted = 0

    async def silent(stream: anyio.abc.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        async with stream:
            await stream.receive()
            await anyio.sleep(10)

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, silent)
            base = f"http://127.0.0.1:{port}/api/v10"
            options: dict[str, Any] = {"timeout": 0.1, "max_retries": 1, "backoff_base": 0.01}
            async with RestClient(TOKEN, api_base=base, **options) as rest:
                with pytest.raises(NetworkError, match="ReadTimeout"):
                    await rest.get("/users/@me")
            tg.cancel_scope.cancel()
    assert accepted == 2


# ----------------------------------------------------------------- errors


async def test_a_400_raises_http_error_with_discords_code_and_message() -> None:
    body = {"message": "Cannot send an empty message", "code": 50006}

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=body)

    async with client(handler) as rest:
        with pytest.raises(HTTPError) as caught:
            await rest.post("/channels/1/messages", {"content": ""})
    error = caught.value
    assert (error.status, error.code, error.message) == (400, 50006, body["message"])
    assert (error.method, error.path) == ("POST", "/channels/1/messages")
    assert str(error) == (
        "POST /channels/1/messages: 400 Bad Request: Cannot send an empty message (code 50006)"
    )


async def test_a_form_error_keeps_the_errors_tree() -> None:
    errors = {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "too long"}]}}

    async def handler(request: httpx.Request) -> httpx.Response:
        body = {"message": "Invalid Form Body", "code": 50035, "errors": errors}
        return httpx.Response(400, json=body)

    async with client(handler) as rest:
        with pytest.raises(HTTPError) as caught:
            await rest.post("/channels/1/messages", {"content": "x" * 3000})
    assert caught.value.errors == errors


@pytest.mark.parametrize(
    ("status", "cls", "text"),
    [(403, Forbidden, "lacks a permission or access"), (404, NotFound, "404 Not Found")],
)
async def test_403_and_404_raise_their_own_classes(
    status: int, cls: type[HTTPError], text: str
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"message": "nope", "code": 50013})

    async with client(handler) as rest:
        with pytest.raises(cls, match=text):
            await rest.get("/channels/1")


async def test_a_401_raises_unauthorized_then_nothing_more_is_sent() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401, json={"message": "401: Unauthorized", "code": 0})

    async with client(handler) as rest:
        with pytest.raises(Unauthorized) as caught:
            await rest.get_gateway_bot()
        assert "the bot token was rejected (401 Unauthorized)" in str(caught.value)
        assert "reset it in the Developer Portal" in str(caught.value)
        with pytest.raises(TokenRejectedError, match=r"GET /gateway/bot answered 401"):
            await rest.for_plugin("ping").post("/channels/1/messages", {"content": "x"})
    assert calls == 1


async def test_requests_queued_behind_a_401_are_not_sent() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.01)
        return httpx.Response(401, json={"message": "401: Unauthorized", "code": 0})

    outcomes: list[type[Exception]] = []

    async def post(rest: RestClient) -> None:
        try:
            await rest.post("/channels/1/messages", {"content": "x"})
        except RestError as error:
            outcomes.append(type(error))

    async with client(handler) as rest, anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(post, rest)
    assert calls == 1
    assert sorted(cls.__name__ for cls in outcomes) == ["TokenRejectedError"] * 4 + ["Unauthorized"]


async def test_a_webhook_401_does_not_condemn_the_bot_token() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if "webhooks" in request.url.path:
            return httpx.Response(401, json={"message": "Invalid Webhook Token", "code": 50027})
        return httpx.Response(200, json={})

    async with client(handler) as rest:
        with pytest.raises(Unauthorized, match="Invalid Webhook Token") as caught:
            await rest.post("/webhooks/1/wrong", {"content": "x"})
        assert "wrong" not in str(caught.value)
        assert await rest.get("/users/@me") == {}


async def test_the_token_never_appears_in_errors_or_reprs() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        status = {"/api/v10/a": 400, "/api/v10/b": 401}.get(request.url.path, 500)
        return httpx.Response(status, json={"message": "x", "code": 1})

    rest = client(handler)
    texts = [str(rest), repr(rest), repr(rest.for_plugin("p"))]
    async with rest:
        for path in ("/a", "/b", "/c"):
            with pytest.raises(RestError) as caught:
                await rest.get(path)
            texts += [str(caught.value), repr(caught.value), repr(vars(caught.value))]
    assert all(TOKEN not in text for text in texts)


# ------------------------------------------------------- invalid requests


async def test_invalid_requests_are_counted_per_plugin_except_shared_429s() -> None:
    answers = {
        "/api/v10/forbidden": lambda: httpx.Response(403, json={"message": "no", "code": 50013}),
        "/api/v10/limited": lambda: too_many(0.001),
        "/api/v10/shared": lambda: too_many(0.001, scope="shared"),
        "/api/v10/missing": lambda: httpx.Response(404, json={"message": "?", "code": 10003}),
    }

    async def handler(request: httpx.Request) -> httpx.Response:
        return answers[request.url.path]()

    async with client(handler, max_retries=0) as rest:
        ping, admin = rest.for_plugin("ping"), rest.for_plugin("admin")
        for view, path in [
            (ping, "/forbidden"),
            (ping, "/limited"),
            (ping, "/shared"),
            (ping, "/missing"),
            (admin, "/forbidden"),
            (rest, "/forbidden"),
        ]:
            with pytest.raises(HTTPError):
                await view.get(path)
        assert rest.invalid_requests == {"ping": 2, "admin": 1, "botrun": 1}


async def test_a_plugin_reaching_a_threshold_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"message": "Missing Permissions", "code": 50013})

    caplog.set_level(logging.WARNING, logger="botrun.rest")
    async with client(handler, global_limit=1000) as rest:
        spammer = rest.for_plugin("spammer")
        for _ in range(100):
            with pytest.raises(Forbidden):
                await spammer.get("/guilds/1/bans")
    warnings = [r.getMessage() for r in caplog.records if r.name == "botrun.rest"]
    assert warnings == [
        "plugin 'spammer' made 100 invalid requests in 10 minutes; Discord bans the IP at 10,000"
    ]


# ------------------------------------------------------------ long waits


class TestVirtualTime:
    """Waits of seconds, run instantly on trio's virtual clock."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    async def test_the_global_limit_spreads_requests_over_seconds(self) -> None:
        times: list[float] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            times.append(anyio.current_time())
            return httpx.Response(200, json={})

        async with client(handler, global_limit=50) as rest, anyio.create_task_group() as tg:
            for channel in range(150):
                tg.start_soon(rest.post, f"/channels/{channel}/messages", {"content": "x"})
        start = times[0]
        assert times[-1] - start == pytest.approx(2.0)
        assert all(
            later - earlier >= 1.0 for earlier, later in zip(times, times[50:], strict=False)
        )

    async def test_a_global_slot_is_held_until_a_period_after_the_answer(self) -> None:
        sent: list[float] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            sent.append(anyio.current_time())
            await anyio.sleep(0.5)  # Discord may count it at any moment until it answers
            return httpx.Response(200, json={})

        async with client(handler, global_limit=2) as rest, anyio.create_task_group() as tg:
            for channel in range(4):
                tg.start_soon(rest.post, f"/channels/{channel}/messages", {"content": "x"})
        start = sent[0]
        assert [t - start for t in sent] == pytest.approx([0.0, 0.0, 1.5, 1.5])

    async def test_a_long_retry_after_is_honoured(self) -> None:
        times: list[float] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            times.append(anyio.current_time())
            return too_many(42.5) if len(times) == 1 else httpx.Response(200, json={})

        async with client(handler) as rest:
            await rest.get("/channels/1/messages")
        assert times[1] - times[0] == pytest.approx(42.5)

    async def test_a_bucket_of_five_per_five_seconds_sends_twenty_in_fifteen(self) -> None:
        times: list[float] = []
        window = [0.0, 0]

        async def handler(request: httpx.Request) -> httpx.Response:
            now = anyio.current_time()
            if now >= window[0] + 5.0:
                window[:] = [now, 0]
            window[1] += 1
            assert window[1] <= 5, "the client overran the bucket"
            times.append(now)
            remaining = 5 - int(window[1])
            return httpx.Response(200, json={}, headers=limits("m", remaining, window[0] + 5 - now))

        async with client(handler) as rest, anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(rest.post, "/channels/1/messages", {"content": "x"})
        assert times[-1] - times[0] == pytest.approx(15.0)
