"""The signal id is a contract: its fast construction must give exactly the UUIDv5 text."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from daemon.signal import _NAMESPACE, signal_id


@given(
    st.text(max_size=20),
    st.text(max_size=40),
    st.text(max_size=20),
    st.text(max_size=6),
    st.integers(min_value=-(2**62), max_value=2**62),
)
def test_signal_id_is_the_uuid5_of_its_fields(
    version: str, strategy: str, symbol: str, interval: str, ts_ms: int
) -> None:
    """For any fields, including non-ASCII text, the id equals ``str(uuid.uuid5(...))`` of the joined name."""
    name = f"{version}|{strategy}|{symbol}|{interval}|{ts_ms}"
    assert signal_id(version, strategy, symbol, interval, ts_ms) == str(uuid.uuid5(_NAMESPACE, name))
