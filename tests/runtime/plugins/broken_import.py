"""Fails to import: it needs a dependency nobody installed."""

from __future__ import annotations

import botrun_test_no_such_dependency  # type: ignore[import-not-found]  # noqa: F401

from runtime import hookimpl


@hookimpl
def on_ready() -> None:
    pass
