"""Realistic gateway traffic, encoded once, exactly as the replay server sends it.

Every event is built from a seeded random "world" (guilds, channels, 5,000
users, a Zipf-distributed vocabulary), so contents, ids, lengths and
activities vary the way real traffic does. One document repeated 100,000
times would be a lie: zlib would shrink it to a few bytes and inflating it
would cost nothing.

A scenario's flood is encoded the way Discord encodes it: JSON with the keys in
Discord's order (``t``, ``s``, ``op``, ``d``), then one deflate context for the
whole stream, each message ending in a sync flush (``00 00 ff ff``), each in
one unmasked binary websocket frame. Every :data:`BATCH` messages the context
ends with a *full* flush instead: nothing after that point refers back to
anything before it, which is what lets the server splice a heartbeat ACK
between two batches without re-encoding the rest (see ``replay_server.py``).
The flood is raw deflate; the zlib header went out with HELLO.

The encoded flood is cached on disk (generating 100,000 events takes seconds),
and the decode floor inflates the very same file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import string
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = [
    "BATCH",
    "ZLIB_HEADER",
    "Flood",
    "Spec",
    "dumps",
    "frame",
    "iter_frames",
    "load_flood",
    "raw_deflate",
]

BATCH: Final = 256
"""Messages between two full flushes: the points where an ACK may be spliced in."""
ZLIB_HEADER: Final = b"\x78\x9c"
"""The two bytes a zlib stream starts with (deflate, 32 KiB window, default level)."""
GENERATOR_VERSION: Final = 5
"""Bump when the payloads change, so that stale cache files are not reused."""
DISCORD_EPOCH_MS: Final = 1_420_070_400_000
_START_MS: Final = 1_714_000_000_000 - DISCORD_EPOCH_MS
CACHE_DIR: Final = Path(tempfile.gettempdir()) / "botrun-bench"


def _stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


dumps: Callable[[Any], bytes]
"""Compact JSON in insertion order (orjson if present; byte-identical either way)."""
try:
    from orjson import dumps
except ImportError:  # pragma: no cover - the bench extra installs orjson
    dumps = _stdlib_dumps


def frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One final, unmasked server frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 0x10000:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def iter_frames(data: bytes) -> Iterator[bytes]:
    """The payloads of the unmasked frames in ``data`` (all complete)."""
    pos, end = 0, len(data)
    while pos < end:
        n = data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        yield data[pos : pos + n]
        pos += n


def raw_deflate(document: bytes) -> bytes:
    """``document`` as a self-contained raw deflate message that ends in a sync flush.

    It refers to nothing sent before it, so it can be spliced in at any full-flush
    point of a stream (HELLO, READY and heartbeat ACKs go out this way).
    """
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15, 9)
    return compressor.compress(document) + compressor.flush(zlib.Z_SYNC_FLUSH)


# --------------------------------------------------------------------------- scenarios


_SPEC_KEYS: Final = {
    "n": "count",
    "pct": "presence_pct",
    "rate": "rate",
    "hb": "heartbeat_ms",
    "window": "window",
    "mc": "max_concurrency",
    "shards": "shards",
    "seed": "seed",
}


@dataclass(frozen=True)
class Spec:
    """What a gateway connection gets after READY, parsed from a URL path segment.

    ``kind`` is ``messages``, ``presence`` (``presence_pct`` % PRESENCE_UPDATE,
    the rest MESSAGE_CREATE, including the first and the last event), ``mixed``
    (messages, presences, typing, reactions and a few GUILD_CREATEs), ``idle``
    (nothing) or ``paced`` (MESSAGE_CREATE at
    ``rate`` per second, encoded live with a send timestamp in ``nonce``).
    Written as ``kind,key=value,...``, e.g. ``presence,n=100000,pct=90``.
    """

    kind: str = "idle"
    count: int = 0
    presence_pct: int = 90
    rate: int = 10_000
    heartbeat_ms: int = 41_250
    window: float = 5.0
    max_concurrency: int = 1
    shards: int = 1
    seed: int = 1

    @classmethod
    def parse(cls, text: str) -> Spec:
        kind, *pairs = text.split(",")
        if kind not in ("messages", "presence", "mixed", "idle", "paced"):
            raise ValueError(f"unknown scenario kind {kind!r}")
        values: dict[str, Any] = {"kind": kind}
        for pair in pairs:
            key, _, value = pair.partition("=")
            name = _SPEC_KEYS[key]
            values[name] = float(value) if name == "window" else int(value)
        return cls(**values)

    def __str__(self) -> str:
        defaults = Spec()
        parts = [self.kind]
        for key, name in _SPEC_KEYS.items():
            value = getattr(self, name)
            if value != getattr(defaults, name):
                parts.append(f"{key}={value}")
        return ",".join(parts)

    @property
    def flood_key(self) -> str:
        """What the pre-encoded flood depends on (not the pacing or REST knobs)."""
        return f"v{GENERATOR_VERSION}-{self.kind}-{self.count}-{self.presence_pct}-{self.seed}"


@dataclass(frozen=True)
class Flood:
    """A pre-encoded flood: websocket frames, in batches ending at full flushes."""

    data: bytes
    batch_ends: list[int]
    """Byte offsets in ``data`` where a batch ends (a full flush: an ACK may go there)."""
    count: int
    """Events after the prelude: the ones the benchmarks time."""
    prelude: int
    """GUILD_CREATEs that come first, one per guild of the world (sequence 2 on)."""
    kinds: dict[str, int]
    json_bytes: int
    """JSON bytes of the timed events."""
    sha256: str

    def batches(self) -> Iterator[memoryview]:
        view = memoryview(self.data)
        start = 0
        for end in self.batch_ends:
            yield view[start:end]
            start = end

    def messages(self) -> list[bytes]:
        """The compressed websocket payloads, one per event, prelude first (for the floor)."""
        return list(iter_frames(self.data))


_META: Final = ("batch_ends", "count", "prelude", "kinds", "json_bytes", "sha256")


def load_flood(spec: Spec, cache_dir: Path = CACHE_DIR) -> Flood:
    """The flood of ``spec``, from the cache or freshly encoded (and then cached)."""
    if spec.kind in ("idle", "paced") or spec.count == 0:
        return Flood(b"", [], 0, 0, {}, 0, hashlib.sha256(b"").hexdigest())
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = cache_dir / f"{spec.flood_key}-zlib{zlib.ZLIB_RUNTIME_VERSION}"
    meta_path, data_path = base.with_suffix(".json"), base.with_suffix(".bin")
    if meta_path.exists() and data_path.exists():
        meta = json.loads(meta_path.read_text())
        data = data_path.read_bytes()
        if hashlib.sha256(data).hexdigest() == meta["sha256"]:
            fields = {key: meta[key] for key in _META}
            return Flood(data=data, **fields)
    flood = _encode(spec)
    data_path.write_bytes(flood.data)
    meta = {key: getattr(flood, key) for key in _META}
    meta_path.write_text(json.dumps(meta))
    return flood


def _encode(spec: Spec) -> Flood:
    world = World(spec.seed)
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    chunks: list[bytes] = []
    batch_ends: list[int] = []
    size = json_bytes = 0
    kinds: dict[str, int] = {}
    # As after a real READY: one GUILD_CREATE per guild, so that clients that cache
    # (discord.py, hikari) know the guilds, channels and members the events refer to.
    prelude = [("GUILD_CREATE", world.guild_create(guild)) for guild in world.guilds]
    events = itertools.chain(prelude, world.events(spec))
    total = len(prelude) + spec.count
    for index, (name, data) in enumerate(events):
        document = dumps({"t": name, "s": index + 2, "op": 0, "d": data})  # READY is s=1
        if index >= len(prelude):
            json_bytes += len(document)
            kinds[name] = kinds.get(name, 0) + 1
        last_of_batch = (index + 1) % BATCH == 0 or index + 1 == total
        mode = zlib.Z_FULL_FLUSH if last_of_batch else zlib.Z_SYNC_FLUSH
        chunk = frame(compressor.compress(document) + compressor.flush(mode))
        chunks.append(chunk)
        size += len(chunk)
        if last_of_batch:
            batch_ends.append(size)
    stream = b"".join(chunks)
    digest = hashlib.sha256(stream).hexdigest()
    return Flood(stream, batch_ends, spec.count, len(prelude), kinds, json_bytes, digest)


# --------------------------------------------------------------------------- the world


def _iso(ms_since_epoch: int) -> str:
    moment = datetime.fromtimestamp((ms_since_epoch + DISCORD_EPOCH_MS) / 1000, UTC)
    return moment.isoformat(timespec="microseconds")


class World:
    """Guilds, channels, users and words that events are made of; all from one seed."""

    def __init__(self, seed: int) -> None:
        rng = self.rng = random.Random(seed)
        self.now_ms = _START_MS
        self._increment = itertools.count()
        letters = string.ascii_lowercase
        words = [
            "".join(rng.choices(letters, k=rng.choice((2, 3, 4, 4, 5, 5, 6, 7, 8, 10))))
            for _ in range(3000)
        ]
        words += ["lol", "gg", "😂", "👍", "🔥", "ça", "über", "日本語", "ok", "?", "!!"]
        self.words = words
        self.word_weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))
        self.users = [self._user(rng) for _ in range(5000)]
        self.games = [
            "".join(rng.choices(letters, k=rng.randint(4, 14))).title() for _ in range(60)
        ]
        self.guilds = [self._guild(rng) for _ in range(40)]

    def snowflake(self) -> int:
        self.now_ms += self.rng.randint(0, 3)
        return (
            (self.now_ms << 22) | (self.rng.randrange(32) << 17) | (next(self._increment) & 0xFFF)
        )

    def _user(self, rng: random.Random) -> dict[str, Any]:
        name = "".join(
            rng.choices(string.ascii_lowercase + string.digits + "_.", k=rng.randint(3, 16))
        )
        return {
            "username": name,
            "public_flags": rng.choice((0, 0, 0, 64, 128, 256, 4194304)),
            "primary_guild": None,
            "id": str(((_START_MS - rng.randrange(1 << 36)) << 22) | rng.randrange(1 << 22)),
            "global_name": name.title() if rng.random() < 0.8 else None,
            "discriminator": "0",
            "collectibles": None,
            "clan": None,
            "avatar_decoration_data": None,
            "avatar": f"{rng.getrandbits(128):032x}" if rng.random() < 0.85 else None,
        }

    def _guild(self, rng: random.Random) -> dict[str, Any]:
        guild_id = ((_START_MS - rng.randrange(1 << 35)) << 22) | rng.randrange(1 << 22)
        return {
            "id": guild_id,
            "channels": [guild_id + 1 + rng.randrange(1 << 20) for _ in range(rng.randint(5, 40))],
            "roles": [
                str(guild_id + (1 << 21) + rng.randrange(1 << 20))
                for _ in range(rng.randint(3, 30))
            ],
            "members": rng.sample(range(len(self.users)), 400),
        }

    def text(self, low: int, high: int) -> str:
        count = int(self.rng.triangular(low, high, low + (high - low) / 4))
        return " ".join(self.rng.choices(self.words, cum_weights=self.word_weights, k=count))

    # -- events ------------------------------------------------------------------------

    def events(self, spec: Spec) -> Iterator[tuple[str, dict[str, Any]]]:
        rng = self.rng
        choose: Callable[[], str]
        if spec.kind == "messages":
            choose = lambda: "MESSAGE_CREATE"  # noqa: E731
        elif spec.kind == "presence":
            share = spec.presence_pct / 100
            choose = lambda: "PRESENCE_UPDATE" if rng.random() < share else "MESSAGE_CREATE"  # noqa: E731
        else:
            names = [
                "MESSAGE_CREATE",
                "PRESENCE_UPDATE",
                "TYPING_START",
                "MESSAGE_REACTION_ADD",
                "GUILD_CREATE",
            ]
            weights = [50, 33, 12, 4.8, 0.2]
            choose = lambda: rng.choices(names, weights)[0]  # noqa: E731
        makers = {
            "MESSAGE_CREATE": self.message_create,
            "PRESENCE_UPDATE": self.presence_update,
            "TYPING_START": self.typing_start,
            "MESSAGE_REACTION_ADD": self.reaction_add,
            "GUILD_CREATE": self.guild_create,
        }
        for index in range(spec.count):
            # A presence flood starts and ends with a message, so that a client that
            # only sees messages can still time the whole stream.
            edge = spec.kind == "presence" and index in (0, spec.count - 1)
            name = "MESSAGE_CREATE" if edge else choose()
            yield name, makers[name]()

    def _member(self, guild: dict[str, Any], user: dict[str, Any] | None = None) -> dict[str, Any]:
        rng = self.rng
        member: dict[str, Any] = {
            "roles": rng.sample(guild["roles"], rng.randint(0, min(4, len(guild["roles"])))),
            "premium_since": None,
            "pending": False,
            "nick": self.text(1, 3)[:32] if rng.random() < 0.2 else None,
            "mute": False,
            "joined_at": _iso(self.now_ms - rng.randrange(1 << 35)),
            "flags": 0,
            "deaf": False,
            "communication_disabled_until": None,
            "banner": None,
            "avatar": None,
        }
        if user is not None:
            member["user"] = user
        return member

    def _pick(self) -> tuple[dict[str, Any], dict[str, Any]]:
        guild = self.rng.choice(self.guilds)
        return guild, self.users[self.rng.choice(guild["members"])]

    def message_create(self) -> dict[str, Any]:
        rng = self.rng
        guild, author = self._pick()
        message_id = self.snowflake()
        content = self.text(3, 60)
        mentions = []
        if rng.random() < 0.12:
            mentioned = self.users[rng.choice(guild["members"])]
            content = f"<@{mentioned['id']}> {content}"
            mentions.append(mentioned | {"member": self._member(guild)})
        data: dict[str, Any] = {
            "type": 0,
            "tts": False,
            "timestamp": _iso(message_id >> 22),
            "pinned": False,
            "mentions": mentions,
            "mention_roles": [],
            "mention_everyone": False,
            "member": self._member(guild),
            "id": str(message_id),
            "flags": 0,
            "embeds": [],
            "edited_timestamp": None,
            "content": content,
            "components": [],
            "channel_type": 0,
            "channel_id": str(rng.choice(guild["channels"])),
            "author": author,
            "attachments": [],
            "guild_id": str(guild["id"]),
        }
        if rng.random() < 0.7:
            data["nonce"] = str(self.snowflake())
        if rng.random() < 0.06:
            data["embeds"].append(self._embed())
        if rng.random() < 0.04:
            data["attachments"].append(self._attachment())
        return data

    def _embed(self) -> dict[str, Any]:
        rng = self.rng
        slug = self.text(2, 6).replace(" ", "-")
        return {
            "type": "article",
            "url": f"https://news.example.com/{slug}",
            "title": self.text(4, 12).title(),
            "description": self.text(10, 40),
            "provider": {"name": "Example News"},
            "thumbnail": {
                "url": f"https://news.example.com/img/{rng.getrandbits(64):x}.jpg",
                "proxy_url": f"https://images-ext-1.discordapp.net/external/{rng.getrandbits(128):x}",
                "width": 1200,
                "height": 630,
                "flags": 0,
            },
        }

    def _attachment(self) -> dict[str, Any]:
        rng = self.rng
        attachment_id = self.snowflake()
        name = f"{self.rng.choice(self.words)}_{rng.randrange(1000)}.png"
        url = f"https://cdn.discordapp.com/attachments/{self.snowflake()}/{attachment_id}/{name}"
        return {
            "width": rng.randint(200, 2000),
            "url": url,
            "size": rng.randint(10_000, 5_000_000),
            "proxy_url": url.replace("cdn.discordapp.com", "media.discordapp.net"),
            "placeholder_version": 1,
            "placeholder": f"{rng.getrandbits(96):x}",
            "id": str(attachment_id),
            "height": rng.randint(200, 2000),
            "filename": name,
            "content_type": "image/png",
        }

    def presence_update(self) -> dict[str, Any]:
        rng = self.rng
        guild, user = self._pick()
        status = rng.choice(("online", "online", "idle", "dnd", "offline"))
        activities: list[dict[str, Any]] = []
        if status != "offline":
            if rng.random() < 0.35:
                activities.append(
                    {
                        "type": 4,
                        "state": self.text(1, 8),
                        "name": "Custom Status",
                        "id": "custom",
                        "created_at": self.now_ms,
                    }
                )
            if rng.random() < 0.4:
                activities.append(self._game())
            elif rng.random() < 0.2:
                activities.append(self._spotify())
        platforms = rng.sample(("desktop", "mobile", "web"), rng.randint(1, 2))
        return {
            "user": {"id": user["id"]},
            "status": status,
            "guild_id": str(guild["id"]),
            "client_status": {} if status == "offline" else dict.fromkeys(platforms, status),
            "broadcast": None,
            "activities": activities,
        }

    def _game(self) -> dict[str, Any]:
        rng = self.rng
        game = rng.choice(self.games)
        activity: dict[str, Any] = {
            "type": 0,
            "timestamps": {"start": self.now_ms - rng.randrange(10_000_000)},
            "name": game,
            "id": f"{rng.getrandbits(64):016x}",
            "created_at": self.now_ms,
            "application_id": str(self.snowflake()),
        }
        if rng.random() < 0.5:
            activity |= {
                "state": self.text(1, 4),
                "details": self.text(2, 6),
                "assets": {"large_image": str(self.snowflake()), "large_text": game},
            }
        return activity

    def _spotify(self) -> dict[str, Any]:
        rng = self.rng
        start = self.now_ms - rng.randrange(200_000)
        return {
            "type": 2,
            "timestamps": {"start": start, "end": start + rng.randint(120_000, 360_000)},
            "sync_id": "".join(rng.choices(string.ascii_letters + string.digits, k=22)),
            "state": self.text(1, 3).title(),
            "session_id": f"{rng.getrandbits(128):032x}",
            "party": {"id": f"spotify:{self.snowflake()}"},
            "name": "Spotify",
            "id": "spotify:1",
            "flags": 48,
            "details": self.text(1, 5).title(),
            "created_at": self.now_ms,
            "assets": {
                "large_text": self.text(1, 4).title(),
                "large_image": f"spotify:ab67616d0000b273{rng.getrandbits(96):024x}",
            },
        }

    def typing_start(self) -> dict[str, Any]:
        guild, user = self._pick()
        return {
            "user_id": user["id"],
            "timestamp": (self.now_ms + DISCORD_EPOCH_MS) // 1000,
            "member": self._member(guild, user),
            "channel_id": str(self.rng.choice(guild["channels"])),
            "guild_id": str(guild["id"]),
        }

    def reaction_add(self) -> dict[str, Any]:
        guild, user = self._pick()
        return {
            "user_id": user["id"],
            "type": 0,
            "message_id": str(self.snowflake()),
            "message_author_id": self.users[self.rng.choice(guild["members"])]["id"],
            "member": self._member(guild, user),
            "emoji": {"name": self.rng.choice(("👍", "😂", "❤️", "🔥", "🎉"))},
            "channel_id": str(self.rng.choice(guild["channels"])),
            "burst": False,
            "guild_id": str(guild["id"]),
        }

    def guild_create(self, guild: dict[str, Any] | None = None) -> dict[str, Any]:
        rng = self.rng
        guild = guild or rng.choice(self.guilds)
        gid = str(guild["id"])
        members = [self._member(guild, self.users[i]) for i in rng.sample(guild["members"], 100)]
        return {
            "id": gid,
            "name": self.text(1, 4).title(),
            "icon": f"{rng.getrandbits(128):032x}",
            "owner_id": members[0]["user"]["id"],
            "unavailable": False,
            "large": True,
            "member_count": rng.randint(300, 50_000),
            "joined_at": _iso(self.now_ms - rng.randrange(1 << 35)),
            "features": rng.sample(
                ("COMMUNITY", "NEWS", "INVITE_SPLASH", "ANIMATED_ICON", "ROLE_ICONS", "VANITY_URL"),
                3,
            ),
            "premium_tier": rng.randrange(4),
            "preferred_locale": "en-US",
            "roles": [
                {
                    "id": role,
                    "name": self.text(1, 3),
                    "permissions": str(rng.getrandbits(40)),
                    "position": n,
                    "color": rng.getrandbits(24),
                    "hoist": n % 3 == 0,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
                for n, role in enumerate(guild["roles"])
            ],
            "emojis": [],
            "stickers": [],
            "channels": [
                {
                    "id": str(c),
                    "type": 0,
                    "name": self.text(1, 3).replace(" ", "-"),
                    "position": n,
                    "parent_id": None,
                    "topic": self.text(0, 12) or None,
                    "permission_overwrites": [],
                    "last_message_id": str(self.snowflake()),
                    "rate_limit_per_user": 0,
                    "nsfw": False,
                    "guild_id": gid,
                }
                for n, c in enumerate(guild["channels"])
            ],
            "threads": [],
            "members": members,
            "voice_states": [],
            "presences": [self.presence_update() | {"guild_id": gid} for _ in range(40)],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }
