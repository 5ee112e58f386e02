"""The soak: 50 shards, random faults, flaky and slow plugins; nothing lost, nothing doubled.

``benchmarks/soak.py`` runs the scenario (``python -m benchmarks.soak
--duration 600`` for any length); here it runs once per test session for
``BOTRUN_SOAK_SECONDS`` (default 55 s of faults, about 60 s in all) on one
backend (asyncio, in the bot process and in the emulator's).
"""

from __future__ import annotations

import json

import pytest

from benchmarks.soak import FAULTS, SoakResult

pytestmark = pytest.mark.slow


def test_the_soak_loses_and_doubles_nothing_and_ends_with_every_shard_ready(
    soak_result: SoakResult,
) -> None:
    result = soak_result
    print(result.table())
    print(result.line())
    context = f"{result.line()}\nseed {result.seed}, outputs in {result.workdir}"
    assert result.problems() == [], context
    assert result.duplicates == 0, context
    assert result.gaps == 0, context
    assert result.reordered == 0, context
    assert result.unknown == 0, context
    assert result.violations == 0, context
    assert result.shards_ready == result.shards == 50, context
    assert result.exit_code == 0, context
    growth = result.rss_growth
    assert growth is not None
    assert growth < 0.10, context


def test_the_soak_really_was_hostile(soak_result: SoakResult) -> None:
    result = soak_result
    context = f"{result.line()}\nfaults {result.faults}, seed {result.seed}"
    # Every kind of fault happened, and the shards both resumed and identified anew.
    assert set(result.faults) == set(FAULTS), context
    assert result.resumes > 0, context
    assert result.reidentifies > 0, context
    assert result.invalidated_sessions > 0, context
    # The flaky plugin raised (about 1 % of the events) and the bot kept going.
    assert result.plugin_errors > 0, context
    assert result.plugin_errors < result.delivered * 0.05, context
    # The slow plugin's backlog overflowed to disk, and it still got every event in order.
    assert result.spills > 0, context
    assert result.slow_plugin_mismatches == 0, context
    # Everything dispatched was delivered, but what invalidated sessions lost by design.
    assert result.delivered == result.dispatched - result.lost_invalidated, context
    assert result.delivered > 5000, context


def test_the_soak_prints_every_figure_on_one_line_and_as_json(soak_result: SoakResult) -> None:
    line = soak_result.line()
    for figure in (
        "dispatched",
        "delivered",
        "duplicates",
        "gaps",
        "lost to invalidated sessions",
        "resumes",
        "re-identifies",
        "violations",
        "ready",
        "RSS",
    ):
        assert figure in line
    data = json.loads(soak_result.as_json())
    assert data["problems"] == []
    assert {"rss_start", "rss_end", "lost_invalidated", "reidentifies"} <= set(data)
