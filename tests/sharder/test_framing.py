"""The data-frame scan: the C extension and the Python loop agree, and which one runs.

Every test of ``test_websocket.py`` runs the parser with each implementation; this
module checks the scan's own contract on inputs the parser never gives it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharder._websocket import _scan_frames_in_python
from tests.sharder.test_websocket import frame

try:
    from sharder._framing import scan_frames as scan_frames_in_c
except ImportError:  # not built: nothing to compare
    scan_frames_in_c = None


@st.composite
def frame_soup(draw: st.DrawFn) -> tuple[bytes, list[int], list[int]]:
    """Frames good and bad (any first byte, masked, every length form), whole or cut
    short anywhere, often within a header; with their payload sizes and start
    offsets, the boundaries worth testing ``max_size`` and ``pos`` at."""
    parts, sizes, starts = [], [], [0]
    for _ in range(draw(st.integers(0, 8))):
        # Whole data frames half the time (what the scan takes), anything else otherwise.
        data_frame = st.sampled_from([0x81, 0x82])
        first = draw(data_frame | st.sampled_from([0x01, 0x80, 0x88, 0x89, 0x8A, 0xC1, 0x03]))
        size = draw(st.sampled_from([0, 1, 125, 126, 127]) | st.integers(0, 300))
        bits = draw(st.sampled_from([None, 16, 64]))
        mask = draw(st.sampled_from([None, None, None, b"abcd"]))
        header_and_payload = frame(first & 0x0F, bytes(size), length_bits=bits, mask=mask)
        parts.append(bytes((first,)) + header_and_payload[1:])
        sizes.append(size)
        starts.append(starts[-1] + len(parts[-1]))
    wire = b"".join(parts)
    cut = draw(
        st.just(len(wire))
        | st.integers(0, len(wire))
        | st.builds(lambda start, into: start + into, st.sampled_from(starts), st.integers(0, 11))
    )
    return wire[:cut], sizes, starts


@pytest.mark.skipif(scan_frames_in_c is None, reason="the C extension is not built")
@settings(max_examples=1000, deadline=None)
@given(soup=frame_soup(), frames=st.integers(-1, 10), data=st.data())
def test_the_c_scan_and_the_python_scan_agree_on_any_input(
    soup: tuple[bytes, list[int], list[int]], frames: int, data: st.DataObject
) -> None:
    assert scan_frames_in_c is not None
    wire, sizes, starts = soup
    at_a_size = [size + delta for size in sizes for delta in (-1, 0, 1)]
    max_size = data.draw(st.sampled_from([-1, 0, 1 << 40, *at_a_size]), label="max_size")
    pos = data.draw(st.sampled_from([-1, *starts]) | st.integers(0, 20), label="pos")
    pos = min(pos, len(wire))
    in_c: list[tuple[int, bytes]] = []
    in_python: list[tuple[int, bytes]] = []
    if min(pos, frames, max_size) < 0:
        for scan, out in ((scan_frames_in_c, in_c), (_scan_frames_in_python, in_python)):
            with pytest.raises(ValueError, match="a negative argument"):
                scan(wire, pos, frames, max_size, out)
        return
    got = scan_frames_in_c(wire, pos, frames, max_size, in_c)
    expected = _scan_frames_in_python(wire, pos, frames, max_size, in_python)
    assert got == expected
    assert in_c == in_python
    assert all(type(payload) is bytes for _, payload in in_c)


@pytest.mark.parametrize("setting", ["", "1"])
def test_botrun_no_extensions_picks_the_python_scan(setting: str) -> None:
    code = "from sharder import _websocket as w; print(w.scan_frames is w._scan_frames_in_python)"
    env = {**os.environ, "BOTRUN_NO_EXTENSIONS": setting}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    python_scan = setting == "1" or scan_frames_in_c is None
    assert done.stdout.strip() == str(python_scan)
