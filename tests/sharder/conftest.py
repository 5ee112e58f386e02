"""Fixtures shared by the sharder's tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sharder._codec import Inflater, ZlibStreamInflater

try:
    from sharder._zlibstream import ZlibStream
except ImportError:  # not built: the Python inflater alone
    ZlibStream = None  # type: ignore[assignment,misc]


@pytest.fixture(
    params=[
        pytest.param(ZlibStreamInflater, id="python"),
        pytest.param(
            ZlibStream,
            id="c",
            marks=pytest.mark.skipif(ZlibStream is None, reason="the C extension is not built"),
        ),
    ]
)
def zlib_inflater(request: pytest.FixtureRequest) -> Callable[..., Inflater]:
    """Each zlib-stream inflater: the Python class and the C one."""
    inflater: Callable[..., Inflater] = request.param
    return inflater
