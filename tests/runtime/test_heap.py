"""The startup heap frozen out of the cycle collector, and given back."""

from __future__ import annotations

import gc
import weakref

from runtime.heap import startup_heap_frozen


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_what_exists_at_startup_is_frozen_until_the_block_ends() -> None:
    assert gc.get_freeze_count() == 0
    with startup_heap_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_a_cycle_made_while_frozen_is_still_collected() -> None:
    with startup_heap_frozen():
        made = cycle()
        gc.collect()
        assert made() is None


def test_startup_garbage_is_collected_before_the_freeze() -> None:
    made = cycle()
    with startup_heap_frozen():
        assert made() is None
