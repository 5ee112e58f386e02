"""The on-disk overflow of a plugin's queue: a bounded FIFO that gives disk space back."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import spill as spill_module
from runtime.spill import Spill, folder_problem


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_values_come_back_in_order_across_segments_with_their_content(tmp_path: Path) -> None:
    spill = Spill(1 << 20, tmp_path, segment_size=256)
    values = [
        {"content": f"message {i}", "seq": i, "mentions": [str(i)] * (i % 5)} for i in range(300)
    ]
    for value in values:
        assert spill.push(value)
    assert len(spill) == 300
    assert spill.pop(7) == values[:7]
    assert spill.pop(1000) == values[7:]
    assert (len(spill), spill.size) == (0, 0)


def test_a_value_larger_than_one_read_comes_back_whole(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(spill_module, "_READ_SIZE", 64)
    spill = Spill(1 << 20, tmp_path)
    values = ["x" * 10, "y" * 500, "z" * 20, "w" * 1000]
    for value in values:
        spill.push(value)
    assert spill.pop(10) == values


def test_push_past_the_limit_writes_nothing_and_says_so(tmp_path: Path) -> None:
    spill = Spill(200, tmp_path)
    assert spill.push("a" * 100)
    size = spill.size
    assert not spill.push("b" * 100)
    assert (len(spill), spill.size) == (1, size)
    assert spill.pop(5) == ["a" * 100]
    assert spill.push("b" * 100)  # room again once read back


def test_disk_space_is_given_back_as_segments_are_read(tmp_path: Path) -> None:
    before = _open_files()
    spill = Spill(1 << 20, tmp_path, segment_size=1000)
    for i in range(100):
        spill.push("v" * 90 + str(i))
    assert _open_files() - before == 10  # 100 records of ~110 bytes, 1,000 bytes a segment
    spill.pop(50)
    assert _open_files() - before == 5
    spill.close()
    assert _open_files() == before


def test_the_files_have_no_name_on_disk(tmp_path: Path) -> None:
    spill = Spill(1 << 20, tmp_path)
    spill.push({"token": "not on disk under any name"})
    assert list(tmp_path.iterdir()) == []
    spill.close()


@settings(max_examples=60, deadline=None)
@given(
    operations=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.text(max_size=300)),
            st.tuples(st.just("pop"), st.integers(0, 40)),
        ),
        max_size=120,
    ),
    limit=st.integers(0, 20_000),
)
def test_it_behaves_as_a_bounded_fifo(operations: list[tuple[str, Any]], limit: int) -> None:
    spill = Spill(limit, segment_size=512)
    model: deque[str] = deque()
    try:
        for operation, argument in operations:
            if operation == "push":
                if spill.push(argument):
                    model.append(argument)
            else:
                expected = [model.popleft() for _ in range(min(argument, len(model)))]
                assert spill.pop(argument) == expected
            assert len(spill) == len(model)
            assert 0 <= spill.size <= limit
        assert spill.pop(len(model)) == list(model)
    finally:
        spill.close()


def test_a_spill_folder_that_cannot_be_used_is_named_with_the_reason(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    assert folder_problem(tmp_path) is None
    assert folder_problem(tmp_path / "missing") == f"{tmp_path / 'missing'} does not exist"
    assert folder_problem(file) == f"{file} is not a folder"
