"""Fixtures of the end-to-end tests.

The test process runs on asyncio only: what is tested is the botrun
subprocess, which runs on each backend through ``--backend`` where it matters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sharder.testing import FakeDiscord

from .helpers import TOKEN


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    """A Discord emulator on loopback that accepts only :data:`TOKEN`."""
    async with FakeDiscord(
        token=TOKEN, heartbeat_interval=0.5, identify_window=0.5, guilds_per_shard=1
    ) as emulator:
        yield emulator
