"""The zlib-stream inflater with early discard, in C (sharder/_zlibstream.c); see _codec."""

INFLATE_LIBRARY: str
"""The inflate library compiled in, and its version: ``"libdeflate 1.26 + botrun.patch"``."""

class ZlibStream:
    def __init__(self, max_size: int) -> None: ...
    @property
    def max_size(self) -> int: ...
    def next_document(
        self, messages: list[tuple[int, bytes]], index: int, disabled: frozenset[bytes], /
    ) -> tuple[int, bytes | None, int, int]: ...
