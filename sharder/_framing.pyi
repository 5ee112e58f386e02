"""The C hot loop of the frame parser (sharder/_framing.c); see ``_scan_frames_in_python``."""

def scan_frames(
    data: bytes, pos: int, frames: int, max_size: int, out: list[tuple[int, bytes]], /
) -> tuple[int, int, int]: ...
