"""The bot process's heap while it serves (:func:`serving_heap`): the startup
heap frozen out of the cycle collector, and glibc's malloc told to keep freed
read buffers for reuse.

What exists once the plugins have started (modules, classes, the config, the
plugins' own state) lives as long as the process. Python's full collection
walks every tracked object each time it runs, in the middle of whatever flood
of events set it off: 8 ms for the runtime's imports alone on the benchmark
machine (37,600 objects). ``gc.freeze()`` moves that heap to a permanent
generation the collector skips, as large Python services do after start-up.
Frozen objects are still freed by reference counting; only a cycle among them
would wait for :func:`serving_heap` to end, which gives them back.

Each socket read allocates a 256 KiB buffer (asyncio's transport, trio's
``recv``). glibc's malloc serves a block that size from ``mmap`` (above its
128 KiB threshold) until it frees one; it then raises the threshold to the
block's size and the trim threshold to twice that, and still hands the top of
its heap back to the kernel whenever more than about 512 KiB of it is free. So a
fresh process's bursts (the guilds after READY, a flood of events) write every
read into pages the kernel must first map: 16,700 minor faults per 100,000
MESSAGE_CREATEs in the throughput benchmark, 9.81 against 9.46 us per event
through the runtime (BENCHMARKS.md, step 28). :func:`keep_freed_memory` sets
the thresholds to 512 KiB and 1 MiB at start: at most 1 MiB of freed heap stays
with the process, and reads reuse it.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["keep_freed_memory", "serving_heap"]

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 512 * 1024
TRIM_THRESHOLD = 1024 * 1024
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Set glibc's mmap and trim thresholds for a reader of 256 KiB buffers.

    Returns whether it did: not on another C library (no ``mallopt``), and not
    where the user tunes malloc through its environment variables or
    ``GLIBC_TUNABLES``, which then stay in charge.
    """
    if sys.platform != "linux" or any(name in environ for name in _USER_SETTINGS):
        return False
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    # The mmap threshold first: setting either turns glibc's own adjustment off.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


@contextmanager
def serving_heap() -> Iterator[None]:
    """Set malloc's thresholds (:func:`keep_freed_memory`), collect once, then keep
    every object alive now out of later collections until the block ends."""
    keep_freed_memory()
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
