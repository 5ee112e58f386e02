"""Soak: a real bot under random gateway faults, counted event by event.

The bot runs as ``botrun run`` in its own process (so that its RSS is its own)
with 50 shards against the Discord emulator, which runs here, in this process,
on loopback. Four drop-in plugins ride along:

* ``soak_recorder`` appends every MESSAGE_CREATE it gets to a file;
* ``soak_flaky`` raises on about 1 % of the events;
* ``soak_sleepy`` sleeps (asynchronously, up to 0.1 s) on about 2 % of them,
  long enough to overflow its backlog of 8 so that what follows waits in its
  spill on disk, and records what it gets to a file of its own: it must get
  exactly what the recorder gets, in the same order;
* ``soak_debug`` writes every shard debug line and error to a file.

Every dispatched MESSAGE_CREATE carries ``soak SHARD SESSION SEQ`` as its
content: the emulator's session id and the sequence number it gets there, so
the recorder's file proves each delivery, duplicate and gap exactly. About a
third of them are followed by a PRESENCE_UPDATE, which no plugin listens to:
the bot drops it unparsed, and each of its resumes must still count it. Meanwhile
random faults hit random connected shards: TCP resets, half-open (zombie)
connections, op 7, op 9 resumable and not, close codes 4000, 4008 and 4009,
and a half-open connection whose session then times out (4009); every frame
is written in small pieces, so that messages span many TCP reads.

When the fault phase ends, the harness waits until every shard takes a fresh
probe event on a live session, then stops the bot with SIGTERM and prints:

* dispatched / delivered: events given to the emulator, records in the file;
* duplicates: deliveries of an event already delivered;
* gaps: events of a session that were never delivered, although the session
  survived (or later events of it were delivered);
* lost to invalidation: the undelivered tail of a session that Discord (the
  emulator) ended with op 9 or 4009, which no client can recover by design;
* resumes, re-identifies, identify-rule violations, shards ready at the end;
* RSS of the bot process after start-up (all shards ready plus a warm-up) and
  at the end.

Required: no duplicates, no gaps, no violations, every shard ready, RSS growth
under 10 %. Exit status 0 when met, 1 otherwise. Bounded: the fault phase lasts
``--duration`` seconds, the settling afterwards at most ``--settle-timeout``.

    python -m benchmarks.soak [--duration 600] [--shards 50] [--rate 250] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import Process

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sharder.testing import FakeDiscord

__all__ = ["SOAK_TOKEN", "SoakOptions", "SoakResult", "main", "run_soak"]

SOAK_TOKEN: Final = "OTg3NjU0MzIxMDk4NzY1NDMy.GsOaKx.q7Zr1mVw9YtPbLc3XeNf8HuJdKs2AoBiEgTn4R"
"""The soak's bot token: shaped like a real one, so that a scan can look for its parts."""

FAULTS: Final = {
    "drop": 3,
    "zombie": 2,
    "op7": 2,
    "op9-resumable": 2,
    "op9-new-session": 1,
    "close-4000": 2,
    "close-4008": 2,
    "close-4009": 1,
    "zombie-then-4009": 1,
}
"""Fault kinds and their relative weights."""

MAX_RSS_GROWTH: Final = 0.10

_RECORDER = '''\
"""Soak: appends every MESSAGE_CREATE (and every READY / RESUMED) to a file."""

from __future__ import annotations

import os
from typing import Any

from runtime import hookimpl

_fd: int | None = None


def _write(line: str) -> None:
    if _fd is not None:
        os.write(_fd, line.encode())  # unbuffered: what was handled is on disk even after SIGKILL


@hookimpl
def on_startup(bot: Any) -> None:
    global _fd
    _fd = os.open(bot.settings["file"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


@hookimpl
def on_message_create(data: dict[str, Any], shard_id: int) -> None:
    _write(f"M {shard_id} {data.get('content')}\\n")


@hookimpl
def on_ready(data: dict[str, Any], shard_id: int) -> None:
    _write(f"R {shard_id} {data.get('session_id')}\\n")


@hookimpl
def on_resumed(data: dict[str, Any], shard_id: int) -> None:
    _write(f"S {shard_id} {data.get('replayed')}\\n")
'''

_FLAKY = '''\
"""Soak: raises on about 1 % of the events."""

from __future__ import annotations

import random
from typing import Any

from runtime import hookimpl


@hookimpl
def on_message_create(data: dict[str, Any]) -> None:
    if random.random() < 0.01:
        raise RuntimeError(f"soak: failing on purpose on {data.get('content')!r}")
'''

_SLEEPY = '''\
"""Soak: sleeps up to 0.1 s on about 2 % of the events, then records each like the recorder."""

from __future__ import annotations

import os
import random
from typing import Any

import anyio

from runtime import hookimpl

_fd: int | None = None


@hookimpl
def on_startup(bot: Any) -> None:
    global _fd
    _fd = os.open(bot.settings["file"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


@hookimpl
async def on_message_create(data: dict[str, Any], shard_id: int) -> None:
    if random.random() < 0.02:
        await anyio.sleep(random.uniform(0.01, 0.1))
    if _fd is not None:
        os.write(_fd, f"M {shard_id} {data.get('content')}\\n".encode())
'''

_DEBUG = '''\
"""Soak: writes every shard debug line and error to a file (the token scan reads it)."""

from __future__ import annotations

from typing import Any

from runtime import hookimpl

_file = None


@hookimpl
def on_startup(bot: Any) -> None:
    global _file
    _file = open(bot.settings["file"], "a", encoding="utf-8")  # noqa: SIM115


@hookimpl
def on_debug(data: Any, shard_id: int) -> None:
    if _file is not None:
        _file.write(f"{shard_id} {data}\\n")


@hookimpl
def on_error(data: Any, shard_id: int) -> None:
    if _file is not None:
        _file.write(f"{shard_id} ERROR {data!r} {data}\\n")
        _file.flush()
'''

PLUGINS: Final = {
    "soak_recorder": _RECORDER,
    "soak_flaky": _FLAKY,
    "soak_sleepy": _SLEEPY,
    "soak_debug": _DEBUG,
}


@dataclass
class SoakOptions:
    """How long, how big and how hostile; durations in seconds."""

    duration: float = 60.0
    """The fault phase, counted from the bot's start (settling comes after)."""
    shards: int = 50
    rate: float = 250.0
    """MESSAGE_CREATE events per second over all shards."""
    fault_interval: float = 0.5
    """Mean seconds between two faults."""
    heartbeat_interval: float = 1.5
    max_concurrency: int = 16
    chunk_size: int | None = 48
    """The emulator writes every frame in TCP writes of this many bytes."""
    backend: str = "asyncio"
    token: str = SOAK_TOKEN
    seed: int | None = None
    warmup: float = 5.0
    """Seconds after every shard is first ready before the start RSS is taken."""
    settle_timeout: float = 90.0
    workdir: Path | None = None
    """Where the config, plugins and outputs go (a temporary folder, removed, if None)."""
    log_level: str = "INFO"


@dataclass
class SoakResult:
    """The figures of one soak run."""

    duration: float
    elapsed: float
    shards: int
    seed: int
    dispatched: int = 0
    delivered: int = 0
    duplicates: int = 0
    gaps: int = 0
    reordered: int = 0
    unknown: int = 0
    lost_invalidated: int = 0
    invalidated_sessions: int = 0
    resumes: int = 0
    reidentifies: int = 0
    violations: int = 0
    shards_ready: int = 0
    rss_start: int | None = None
    rss_end: int | None = None
    exit_code: int | None = None
    plugin_errors: int = 0
    spills: int = 0
    """Times the slow plugin's backlog filled up and its events went to disk."""
    slow_plugin_mismatches: int = 0
    """Sessions whose events the slow plugin got differently from the recorder."""
    faults: dict[str, int] = field(default_factory=dict)
    harness_errors: list[str] = field(default_factory=list)
    """What went wrong outside the figures (the bot died, the emulator misnumbered)."""
    workdir: str = ""

    @property
    def rss_growth(self) -> float | None:
        if not self.rss_start or self.rss_end is None:
            return None
        return (self.rss_end - self.rss_start) / self.rss_start

    def problems(self) -> list[str]:
        """Every requirement the run missed (empty: it passed)."""
        problems = []
        for name in (
            "duplicates",
            "gaps",
            "reordered",
            "unknown",
            "violations",
            "slow_plugin_mismatches",
        ):
            if getattr(self, name):
                problems.append(f"{name}: {getattr(self, name)}")
        if self.shards_ready != self.shards:
            problems.append(f"only {self.shards_ready} of {self.shards} shards ready at the end")
        growth = self.rss_growth
        if growth is None:
            problems.append("RSS was not measured")
        elif growth >= MAX_RSS_GROWTH:
            problems.append(f"RSS grew by {growth:.1%}")
        if self.exit_code != 0:
            problems.append(f"the bot exited with {self.exit_code}")
        problems.extend(self.harness_errors)
        return problems

    def line(self) -> str:
        """The one-line summary."""
        growth = self.rss_growth
        shown = "n/a" if growth is None else f"{growth:+.1%}"
        return (
            f"soak {self.duration:.0f} s ({self.elapsed:.0f} s total), {self.shards} shards: "
            f"dispatched {self.dispatched}, delivered {self.delivered}, "
            f"duplicates {self.duplicates}, gaps {self.gaps}, "
            f"lost to invalidated sessions {self.lost_invalidated} "
            f"({self.invalidated_sessions} sessions), resumes {self.resumes}, "
            f"re-identifies {self.reidentifies}, violations {self.violations}, "
            f"ready {self.shards_ready}/{self.shards}, "
            f"slow plugin: spills {self.spills}, "
            f"sessions it saw otherwise {self.slow_plugin_mismatches}, "
            f"RSS {_mib(self.rss_start)} -> {_mib(self.rss_end)} MiB ({shown})"
        )

    def table(self) -> str:
        rows = [
            ("fault phase (s)", f"{self.duration:.0f}"),
            ("total time (s)", f"{self.elapsed:.1f}"),
            ("seed", str(self.seed)),
            ("shards", str(self.shards)),
            ("faults injected", ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))),
            ("events dispatched by the emulator", str(self.dispatched)),
            ("events delivered to the plugin", str(self.delivered)),
            ("duplicates", str(self.duplicates)),
            ("gaps within a session", str(self.gaps)),
            ("out of order within a session", str(self.reordered)),
            (
                "lost to invalidated sessions (by design)",
                f"{self.lost_invalidated} in {self.invalidated_sessions} sessions",
            ),
            ("resumes", str(self.resumes)),
            ("re-identifies", str(self.reidentifies)),
            ("identify-rule violations", str(self.violations)),
            ("shards READY at the end", f"{self.shards_ready}/{self.shards}"),
            ("plugin errors (flaky plugin)", str(self.plugin_errors)),
            ("slow plugin's backlog spilled to disk (times)", str(self.spills)),
            ("sessions the slow plugin saw otherwise", str(self.slow_plugin_mismatches)),
            ("RSS at start (MiB)", _mib(self.rss_start)),
            ("RSS at end (MiB)", _mib(self.rss_end)),
            ("bot exit status", str(self.exit_code)),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def as_json(self) -> str:
        data = asdict(self)
        data["rss_growth"] = self.rss_growth
        data["problems"] = self.problems()
        return json.dumps(data, sort_keys=True)


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f}"


# ---------------------------------------------------------------------- the run


class _Records:
    """Reads the recorder's file as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.messages: list[tuple[int, str, int]] = []
        """(shard, session id, seq) in delivery order; (-1, raw, -1) for content not ours."""
        self.seen: set[tuple[str, int]] = set()

    def poll(self) -> None:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if not line.startswith("M "):
                continue
            parts = line.split(" ")
            if len(parts) == 6 and parts[2] == "soak":
                record = (int(parts[3]), parts[4], int(parts[5]))
                self.messages.append(record)
                self.seen.add((record[1], record[2]))
            else:
                self.messages.append((-1, line, -1))


@dataclass
class _State:
    rng: random.Random
    dispatched: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    session_shard: dict[str, int] = field(default_factory=dict)
    first_seen: dict[str, int] = field(default_factory=dict)
    newest: dict[int, int] = field(default_factory=dict)
    invalidated: set[str] = field(default_factory=set)
    faults: Counter[str] = field(default_factory=Counter)
    harness_errors: list[str] = field(default_factory=list)


def _current_sessions(discord: FakeDiscord, state: _State) -> dict[int, tuple[str, int]]:
    """``{shard: (session id, seq)}`` of each shard's newest live session."""
    latest: dict[int, tuple[str, int]] = {}
    for session_id, info in discord.sessions.items():  # in creation order
        if session_id not in state.first_seen:
            state.first_seen[session_id] = len(state.first_seen)
            state.session_shard[session_id] = info.shard
        state.newest[info.shard] = max(
            state.newest.get(info.shard, -1), state.first_seen[session_id]
        )
        latest[info.shard] = (session_id, info.seq)
    # A shard whose newest known session is gone has none (an older one is not its current).
    return {
        shard: value
        for shard, value in latest.items()
        if state.first_seen[value[0]] == state.newest[shard]
    }


async def _dispatch(discord: FakeDiscord, state: _State, counts: Counter[int]) -> None:
    """Dispatch ``counts[shard]`` MESSAGE_CREATEs to each shard's current session.

    A PRESENCE_UPDATE follows about a third of them: no plugin listens to it, so
    the bot drops it unparsed, and a resume must still count it in the sequence.
    """
    current = _current_sessions(discord, state)
    for shard, count in counts.items():
        if shard not in current:
            continue
        session_id, seq = current[shard]
        events: list[tuple[str, dict[str, Any]]] = []
        messages: list[int] = []  # the MESSAGE_CREATEs' sequences
        for _ in range(count):
            messages.append(seq + len(events) + 1)
            message = {
                "id": str(1_000_000 + messages[-1]),
                "channel_id": str(100 + shard),
                "content": f"soak {shard} {session_id} {messages[-1]}",
            }
            events.append(("MESSAGE_CREATE", message))
            if state.rng.random() < 1 / 3:
                events.append(("PRESENCE_UPDATE", {"user": {"id": "1"}, "status": "idle"}))
        got = await discord.dispatch_many(shard, events)  # no checkpoint before the dispatches
        expected = list(range(seq + 1, seq + len(events) + 1))
        if got != expected:
            state.harness_errors.append(f"shard {shard}: seqs {got[:3]} not {expected[:3]}")
        state.dispatched[session_id].extend(messages)


async def _dispatcher(discord: FakeDiscord, state: _State, rate: float, shards: int) -> None:
    tick = 0.1
    owed = 0.0
    while True:
        await anyio.sleep(tick)
        owed += rate * tick
        whole = int(owed)
        owed -= whole
        counts = Counter(state.rng.randrange(shards) for _ in range(whole))
        await _dispatch(discord, state, counts)


async def _inject(discord: FakeDiscord, state: _State, shard: int, kind: str) -> None:
    session = _current_sessions(discord, state).get(shard)
    if kind == "drop":
        await discord.drop(shard)
    elif kind == "zombie":
        discord.zombify(shard)
    elif kind == "zombie-then-4009":
        # A half-open connection whose session Discord then times out: what was
        # dispatched meanwhile never reaches the bot, and the session is gone.
        discord.zombify(shard)
        state.faults[kind] += 1
        await anyio.sleep(0.5)
        await discord.close_shard(shard, 4009)
        if session is not None:
            state.invalidated.add(session[0])
        return
    elif kind == "op7":
        await discord.reconnect(shard)
    elif kind == "op9-resumable":
        await discord.invalidate(shard, resumable=True)
    elif kind == "op9-new-session":
        await discord.invalidate(shard, resumable=False)
    else:
        await discord.close_shard(shard, int(kind.removeprefix("close-")))
    if kind in ("op9-new-session", "close-4009") and session is not None:
        state.invalidated.add(session[0])
    state.faults[kind] += 1


async def _faults(discord: FakeDiscord, state: _State, interval: float) -> None:
    kinds = list(FAULTS)
    weights = list(FAULTS.values())
    first_round = state.rng.sample(kinds, len(kinds))  # every kind at least once
    while True:
        await anyio.sleep(state.rng.expovariate(1 / interval))
        connected = sorted(discord.connected_shards())
        if not connected:
            continue
        shard = state.rng.choice(connected)
        kind = first_round.pop() if first_round else state.rng.choices(kinds, weights)[0]
        with contextlib.suppress(LookupError):  # the connection went away meanwhile
            await _inject(discord, state, shard, kind)


async def _watch(process: Process, state: _State, scope: anyio.CancelScope) -> None:
    """End the fault phase at once if the bot exits on its own."""
    await process.wait()
    state.harness_errors.append(f"the bot exited during the fault phase ({process.returncode})")
    scope.cancel()


async def _all_identified(discord: FakeDiscord, shards: int) -> None:
    while len({e.shard_id for e in discord.entries("ready")}) < shards:  # noqa: ASYNC110
        await anyio.sleep(0.1)


def _rss(pid: int) -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def _write_files(workdir: Path, discord: FakeDiscord, options: SoakOptions) -> Path:
    plugins = workdir / "plugins.d"
    plugins.mkdir(mode=0o700, exist_ok=True)
    for name, source in PLUGINS.items():
        (plugins / f"{name}.py").write_text(source, encoding="utf-8")
    config = workdir / "soak.toml"
    config.write_text(
        f"""\
[discord]
token_env = "SOAK_BOT_TOKEN"
api_base = "{discord.api_base}"
intents = ["GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]

[gateway]
shards = "auto"
compression = "zlib-stream"

[plugins]
paths = ["plugins.d"]
enabled = {json.dumps(list(PLUGINS))}
backlog = 8
overflow = "wait"
shutdown_grace = 5.0

[plugins.soak_sleepy]
file = "{workdir / "sleepy.txt"}"

[plugins.soak_recorder]
file = "{workdir / "records.txt"}"

[plugins.soak_debug]
file = "{workdir / "debug.txt"}"

[sessions]
file = "sessions.json"
save_interval = 1.0

[logging]
level = "{options.log_level}"

[emulator]
enabled = false
""",
        encoding="utf-8",
    )
    return config


async def _wait_exit(process: Process, timeout: float) -> int | None:
    with anyio.move_on_after(timeout):
        await process.wait()
    return process.returncode


async def _settle(
    discord: FakeDiscord, state: _State, records: _Records, shards: int, timeout: float
) -> int:
    """Probe each shard's current session until every probe is delivered; returns how many were."""
    probed: dict[int, tuple[str, int]] = {}
    with anyio.move_on_after(timeout):
        while True:
            records.poll()
            done = {s for s, key in probed.items() if key in records.seen}
            if len(done) == shards:
                break
            current = _current_sessions(discord, state)
            for shard in range(shards):
                if shard in done or shard not in current:
                    continue
                session_id = current[shard][0]
                if probed.get(shard, ("",))[0] != session_id:
                    before = len(state.dispatched[session_id])
                    await _dispatch(discord, state, Counter({shard: 1}))
                    seqs = state.dispatched[session_id]
                    if len(seqs) > before:
                        probed[shard] = (session_id, seqs[-1])
            await anyio.sleep(0.2)
    records.poll()
    return sum(1 for key in probed.values() if key in records.seen)


def _count(result: SoakResult, state: _State, records: _Records, discord: FakeDiscord) -> None:
    live = set(discord.sessions)
    for entry in discord.entries("invalid_session_sent"):
        if entry.detail.get("resumable") is False and entry.session_id:
            state.invalidated.add(entry.session_id)
    delivered: dict[str, list[int]] = defaultdict(list)
    for shard, session_id, seq in records.messages:
        if shard < 0:
            result.unknown += 1
            continue
        delivered[session_id].append(seq)
    result.delivered = len(records.messages)
    result.dispatched = sum(len(seqs) for seqs in state.dispatched.values())
    for session_id, seqs in delivered.items():
        result.duplicates += len(seqs) - len(set(seqs))
        result.reordered += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        result.unknown += len(set(seqs) - set(state.dispatched.get(session_id, ())))
    for session_id, sent in state.dispatched.items():
        got = set(delivered.get(session_id, ()))
        missing = set(sent) - got
        if not missing:
            continue
        dead = session_id not in live
        if dead and session_id in state.invalidated:
            last = max(got, default=0)
            result.gaps += sum(1 for seq in missing if seq < last)
            result.lost_invalidated += sum(1 for seq in missing if seq > last)
        else:
            result.gaps += len(missing)
    result.invalidated_sessions = len(state.invalidated)
    result.resumes = len(discord.entries("resumed"))
    result.reidentifies = max(0, len(discord.entries("identify")) - result.shards)
    result.violations = len(discord.violations)
    result.faults = dict(state.faults)


def _log_counts(stderr: Path) -> tuple[int, int]:
    """The flaky plugin's errors and the slow plugin's spills, from the bot's log."""
    try:
        text = stderr.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return 0, 0
    return (
        text.count("plugin 'soak_flaky' failed in on_message_create"),
        int(_SPILLS.findall(text)[-1]) if _SPILLS.search(text) else 0,
    )


# The bot's last line at shutdown: plugins that fell behind ... {'soak_sleepy': {... 'spills': N}}
_SPILLS = re.compile(r"fell behind.*'soak_sleepy': \{[^}]*'spills': (\d+)")


def _mismatches(recorded: _Records, slow: _Records) -> int:
    """Sessions whose deliveries differ between the two plugins (content and order)."""

    def by_session(records: _Records) -> dict[str, list[int]]:
        sessions: dict[str, list[int]] = defaultdict(list)
        for _, session_id, seq in records.messages:
            sessions[session_id].append(seq)
        return sessions

    expected, got = by_session(recorded), by_session(slow)
    return sum(1 for key in expected.keys() | got.keys() if expected.get(key) != got.get(key))


async def run_soak(options: SoakOptions, *, log: Any = None) -> SoakResult:
    """Run one soak; ``log(text)`` gets progress lines (nothing if None)."""
    say = log or (lambda text: None)
    seed = options.seed if options.seed is not None else random.randrange(2**32)
    state = _State(random.Random(seed))
    own_dir = options.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="botrun-soak-")) if own_dir else options.workdir
    assert workdir is not None
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    result = SoakResult(options.duration, 0.0, options.shards, seed, workdir=str(workdir))
    started = time.monotonic()
    process: Process | None = None
    try:
        async with FakeDiscord(
            token=options.token,
            shards=options.shards,
            max_concurrency=options.max_concurrency,
            heartbeat_interval=options.heartbeat_interval,
            identify_window=5.0,
            guilds_per_shard=1,
            members_per_guild=5,
            write_chunk_size=options.chunk_size,
            replay_limit=20_000,
        ) as discord:
            config = _write_files(workdir, discord, options)
            records = _Records(workdir / "records.txt")
            env = {**os.environ, "SOAK_BOT_TOKEN": options.token, "PYTHONUNBUFFERED": "1"}
            env.pop("BOTRUN_LOAD_PLUGINS", None)
            command = [sys.executable, "-m", "runtime", "run", str(config)]
            command += ["--backend", options.backend]
            with (
                (workdir / "stdout.txt").open("wb") as stdout,
                (workdir / "stderr.txt").open("wb") as stderr,
            ):
                process = await anyio.open_process(
                    command, cwd=workdir, env=env, stdout=stdout, stderr=stderr
                )
            say(f"bot started (pid {process.pid}), seed {seed}")
            async with anyio.create_task_group() as tg:
                tg.start_soon(_dispatcher, discord, state, options.rate, options.shards)
                tg.start_soon(_faults, discord, state, options.fault_interval)
                tg.start_soon(_watch, process, state, tg.cancel_scope)
                deadline = started + options.duration
                with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                    await _all_identified(discord, options.shards)
                    ready_at = time.monotonic() - started
                    say(f"all {options.shards} shards identified after {ready_at:.1f} s")
                    await anyio.sleep(options.warmup)
                    result.rss_start = _rss(process.pid)
                    say(f"RSS at start: {_mib(result.rss_start)} MiB")
                    await anyio.sleep_forever()
                tg.cancel_scope.cancel()
            say(f"fault phase over ({dict(state.faults)}); settling")
            if process.returncode is None:
                result.shards_ready = await _settle(
                    discord, state, records, options.shards, options.settle_timeout
                )
            await anyio.sleep(0.5)
            records.poll()
            result.rss_end = _rss(process.pid)
            process.send_signal(signal.SIGTERM)
            result.exit_code = await _wait_exit(process, 30.0)
            records.poll()
            _count(result, state, records, discord)
            slow = _Records(workdir / "sleepy.txt")
            slow.poll()
            result.slow_plugin_mismatches = _mismatches(records, slow)
            result.harness_errors = state.harness_errors[:20]
            if state.harness_errors:
                say("harness errors: " + "; ".join(state.harness_errors[:5]))
    finally:
        if process is not None and process.returncode is None:
            with anyio.CancelScope(shield=True):
                process.kill()
                await process.wait()
        result.elapsed = time.monotonic() - started
        result.plugin_errors, result.spills = _log_counts(workdir / "stderr.txt")
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    defaults = SoakOptions()
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument("--shards", type=int, default=defaults.shards)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="events per second")
    parser.add_argument("--fault-interval", type=float, default=defaults.fault_interval)
    parser.add_argument("--heartbeat-interval", type=float, default=defaults.heartbeat_interval)
    parser.add_argument("--max-concurrency", type=int, default=defaults.max_concurrency)
    parser.add_argument("--chunk-size", type=int, default=defaults.chunk_size)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default=defaults.backend)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the outputs here")
    args = parser.parse_args(argv)
    options = SoakOptions(
        duration=args.duration,
        shards=args.shards,
        rate=args.rate,
        fault_interval=args.fault_interval,
        heartbeat_interval=args.heartbeat_interval,
        max_concurrency=args.max_concurrency,
        chunk_size=args.chunk_size or None,
        backend=args.backend,
        seed=args.seed,
        warmup=args.warmup if args.warmup is not None else min(30.0, max(5.0, args.duration / 20)),
        workdir=args.workdir,
    )

    def say(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    result = anyio.run(functools.partial(run_soak, options, log=say))
    print(result.table())
    print(result.line())
    print(result.as_json())
    problems = result.problems()
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
