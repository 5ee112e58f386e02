"""A submodule of the package plugin."""

from __future__ import annotations

from typing import Any


def reply_to(data: dict[str, Any]) -> str:
    return f"hello {data.get('content', '')}"
