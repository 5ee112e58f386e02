"""A plugin's overflow, kept on disk in arrival order.

A plugin that falls behind under ``overflow = "wait"`` must lose nothing and
hold up no other plugin, and its backlog must stay bounded in memory. So what
does not fit in its in-memory queue is pickled into anonymous temporary files:
they have no name on disk (``tempfile.TemporaryFile``), so no other process can
read, swap or tamper with them, and they vanish with the process.

Records are a 4-byte length and a pickle, appended with ``pwrite`` and read back
with ``pread`` in batches. The data are split into segments so that disk space is
given back as the plugin catches up, not only when it has caught up entirely.
Writes go to the page cache (a few microseconds); they happen on the event
loop, in the order the events arrived.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections import deque
from pathlib import Path
from typing import IO, Any

__all__ = ["Spill", "folder_problem"]

_HEADER = 4
_READ_SIZE = 1 << 20
_SEGMENT_SIZE = 16 << 20


def folder_problem(folder: Path) -> str | None:
    """Why spill files cannot go in ``folder``; None if they can."""
    if not folder.exists():
        return f"{folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable"
    return None


class _Segment:
    __slots__ = ("fd", "file", "read", "write")

    def __init__(self, directory: Path | None) -> None:
        # Closed when read to the end or by Spill.close, not at the end of a block.
        self.file: IO[bytes] = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
        self.fd = self.file.fileno()
        self.read = 0
        self.write = 0


class Spill:
    """A FIFO of picklable values on disk, bounded by ``limit`` bytes."""

    def __init__(
        self, limit: int, directory: Path | None = None, *, segment_size: int = _SEGMENT_SIZE
    ) -> None:
        self.limit = limit
        self.directory = directory
        self.segment_size = segment_size
        self.size = 0
        """Bytes written and not yet read back."""
        self.count = 0
        """Values written and not yet read back."""
        self._segments: deque[_Segment] = deque()

    def __len__(self) -> int:
        return self.count

    def push(self, value: Any) -> bool:
        """Append ``value``; False, and nothing written, if it would pass the limit.

        Raises what pickling raises for a value that cannot be pickled.
        """
        blob = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        record = len(blob).to_bytes(_HEADER, "little") + blob
        if self.size + len(record) > self.limit:
            return False
        segments = self._segments
        if not segments or segments[-1].write >= self.segment_size:
            segments.append(_Segment(self.directory))
        segment = segments[-1]
        os.pwrite(segment.fd, record, segment.write)
        segment.write += len(record)
        self.size += len(record)
        self.count += 1
        return True

    def pop(self, count: int) -> list[Any]:
        """Take up to ``count`` values, oldest first."""
        values: list[Any] = []
        segments = self._segments
        while segments and len(values) < count:
            segment = segments[0]
            chunk = os.pread(
                segment.fd, min(_READ_SIZE, segment.write - segment.read), segment.read
            )
            used = 0
            while len(values) < count and used + _HEADER <= len(chunk):
                length = int.from_bytes(chunk[used : used + _HEADER], "little")
                end = used + _HEADER + length
                if end > len(chunk):
                    if used == 0:  # one record larger than a read: fetch it whole
                        chunk = os.pread(segment.fd, _HEADER + length, segment.read)
                        continue
                    break
                values.append(pickle.loads(chunk[used + _HEADER : end]))
                used = end
            segment.read += used
            self.size -= used
            if segment.read >= segment.write:
                segments.popleft().file.close()  # its disk space goes back now
        self.count -= len(values)
        return values

    def close(self) -> None:
        """Drop every value and give the disk space back."""
        while self._segments:
            self._segments.popleft().file.close()
        self.size = self.count = 0
