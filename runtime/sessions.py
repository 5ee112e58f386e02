"""The sessions file: every shard's session, so a restarted bot resumes instead of identifying.

Written atomically (temporary file, fsync, rename) with mode 0600: a crash
mid-write leaves the previous file intact, and no other user can read session
ids. The token is never written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sharder import Session

from .errors import ConfigError

__all__ = ["SessionStore"]

logger = logging.getLogger("botrun.sessions")
FORMAT_VERSION = 1
_SESSION_FIELDS = ("session_id", "sequence", "resume_url")


class SessionStore:
    """Reads and writes ``{shard_id: {session_id, sequence, resume_url}}`` for one bot."""

    def __init__(self, path: Path, *, config_file: Path | str = "") -> None:
        self.path = path
        self._config_file = config_file
        self.saves = 0

    def check_permissions(self) -> None:
        """Refuse a file (or folder) that other users may write: they could steer our resumes."""
        for target in (self.path, self.path.parent):
            if not target.exists():
                continue
            mode = target.stat().st_mode
            if target == self.path and mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise ConfigError(
                    self._config_file,
                    "sessions.file",
                    f"{target} is writable by other users; refusing it (run: chmod 600 {target})",
                )
            if target != self.path and mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
                raise ConfigError(
                    self._config_file,
                    "sessions.file",
                    f"the folder {target} is writable by every user; refusing to keep "
                    "sessions there",
                )

    def load(self, total: int, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Sessions to resume, as ``shard_options``; {} if the file is missing or stale."""
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable sessions file %s: %s", self.path, exc)
            return {}
        if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
            logger.warning("ignoring sessions file %s: unknown format", self.path)
            return {}
        if document.get("total") != total:
            logger.info(
                "sessions file %s was written for %s shards, not %s: identifying anew",
                self.path,
                document.get("total"),
                total,
            )
            return {}
        shards = document.get("shards")
        result: dict[int, dict[str, Any]] = {}
        if isinstance(shards, dict):
            for key, value in shards.items():
                # isascii: "²".isdigit() is true, yet int("²") raises.
                if not (
                    isinstance(key, str)
                    and key.isascii()
                    and key.isdigit()
                    and isinstance(value, dict)
                ):
                    continue
                session = Session.from_mapping(value)
                if session is not None and int(key) in ids:
                    result[int(key)] = session.to_dict()
        return result

    def save(self, total: int, sessions: Mapping[int, Mapping[str, Any]]) -> None:
        """Replace the file atomically with these sessions."""
        document = {
            "version": FORMAT_VERSION,
            "total": total,
            # Only the session's own fields: never whatever else a caller passed (a token).
            "shards": {
                str(k): {f: v[f] for f in _SESSION_FIELDS if f in v}
                for k, v in sorted(sessions.items())
            },
        }
        data = json.dumps(document, indent=1).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.saves += 1
