"""The startup heap frozen out of the cycle collector, and given back; malloc's thresholds."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import weakref

import pytest

from runtime.heap import keep_freed_memory, serving_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_what_exists_at_startup_is_frozen_until_the_block_ends() -> None:
    assert gc.get_freeze_count() == 0
    with serving_heap():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_a_cycle_made_while_frozen_is_still_collected() -> None:
    with serving_heap():
        made = cycle()
        gc.collect()
        assert made() is None


def test_startup_garbage_is_collected_before_the_freeze() -> None:
    made = cycle()
    with serving_heap():
        assert made() is None


# A fresh process: the thresholds are the process's. It first pins glibc's initial
# ones (128 KiB each), which glibc would otherwise move as blocks are freed.
READ_BUFFERS = """
import ctypes
from runtime.heap import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    ).split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
assert keep_freed_memory()
before = libc.mallinfo2()
reads = [bytearray(200 * 1024) for _ in range(2)]
during = libc.mallinfo2()
del reads
after = libc.mallinfo2()
print(during.hblks - before.hblks, during.arena - after.arena)
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
def test_read_sized_blocks_come_from_the_heap_and_stay_there_once_freed_memory_is_kept() -> None:
    # Neither mapped on their own nor given back to the kernel when freed (with the
    # trim threshold at 128 KiB these 400 KiB would be).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    done = subprocess.run(
        [sys.executable, "-c", READ_BUFFERS], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["0", "0"]


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"MALLOC_TOP_PAD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    ],
)
def test_malloc_settings_the_user_made_are_left_alone(environ: dict[str, str]) -> None:
    assert keep_freed_memory(environ) is False
