"""A gateway session: what a RESUME needs, serializable across process restarts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Session"]


@dataclass(frozen=True, slots=True)
class Session:
    """``session_id``, the last ``sequence`` seen and the ``resume_url`` READY gave."""

    session_id: str
    sequence: int
    resume_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "sequence": self.sequence,
            "resume_url": self.resume_url,
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Session | None:
        """Read ``{session_id, sequence, resume_url}``; None if it cannot resume."""
        session_id = data.get("session_id")
        sequence = data.get("sequence")
        resume_url = data.get("resume_url")
        if not isinstance(session_id, str) or not session_id:
            return None
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            return None
        if resume_url is not None and not isinstance(resume_url, str):
            resume_url = None
        return cls(session_id, sequence, resume_url or None)
