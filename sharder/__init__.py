"""botrun's gateway library: a Python port of tiny-discord's InternalSharder on anyio.

No runtime and no plugins here: shards, the sharder, identify queues, codecs and
the sans-I/O gateway state machine. ``sharder.testing`` holds the Discord emulator.
"""

from ._codec import JSON_LIBRARY, zstd_available
from ._constants import DISPATCH_EVENTS, EVENT_INTENTS, CloseCode, Intents, OpCode
from ._session import Session
from .errors import (
    GatewayClosedError,
    HandshakeError,
    ProtocolViolation,
    RateLimitedError,
    RequestTimeoutError,
    SharderError,
    TransportError,
)
from .identify import HookIdentifyQueue, IdentifyHook, IdentifyQueue, LocalIdentifyQueue
from .shard import ShardOptions, ShardStatus, WebsocketShard
from .sharder import InternalSharder

__all__ = [
    "DISPATCH_EVENTS",
    "EVENT_INTENTS",
    "JSON_LIBRARY",
    "CloseCode",
    "GatewayClosedError",
    "HandshakeError",
    "HookIdentifyQueue",
    "IdentifyHook",
    "IdentifyQueue",
    "Intents",
    "InternalSharder",
    "LocalIdentifyQueue",
    "OpCode",
    "ProtocolViolation",
    "RateLimitedError",
    "RequestTimeoutError",
    "Session",
    "ShardOptions",
    "ShardStatus",
    "SharderError",
    "TransportError",
    "WebsocketShard",
    "zstd_available",
]

__version__ = "0.1.0"
