"""The early-discard matcher: exactly the disabled names, with their sequence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sharder import DISPATCH_EVENTS
from sharder._peek import drop_matcher

_NAMES = st.one_of(
    st.sampled_from(DISPATCH_EVENTS),
    st.text("ABCDEGIMNORSTU_", min_size=1, max_size=20),  # prefixes and near-misses of them
)


@given(st.frozensets(_NAMES, max_size=40), _NAMES, st.integers(0, 2**53))
def test_drop_matcher_matches_a_dispatch_exactly_when_its_name_is_disabled(
    disabled: frozenset[str], name: str, seq: int
) -> None:
    match = drop_matcher(frozenset(n.encode() for n in disabled))
    payload = b'{"t":"%s","s":%d,"op":0,"d":{}}' % (name.encode(), seq)
    if not disabled:
        assert match is None
        return
    assert match is not None
    found = match(payload)
    if name in disabled:
        assert found is not None
        assert int(found[1]) == seq
    else:
        assert found is None


def test_drop_matcher_needs_the_name_and_sequence_first_as_discord_writes_them() -> None:
    match = drop_matcher(frozenset({b"PRESENCE_UPDATE"}))
    assert match is not None
    assert match(b'{"t":"PRESENCE_UPDATE","s":7,"op":0,"d":{}}') is not None
    for other in (
        b'{"op":0,"t":"PRESENCE_UPDATE","s":7,"d":{}}',  # another order: parsed, not dropped
        b'{"t":"PRESENCE_UPDATE","s":null,"op":0,"d":{}}',
        b'{"t":"PRESENCE_UPDATE_X","s":7,"op":0,"d":{}}',
        b'{"t":"PRESENCE_UPDAT","s":7,"op":0,"d":{}}',
    ):
        assert match(other) is None
