"""Dead-letter records within a byte budget."""

from __future__ import annotations

import hashlib
import os

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from daemon.dead_letters import MAX_KEY_BYTES, DeadLetterRecord, bounded_record
from daemon.signal import DeadLetter

BUDGET = 65_536


def letter(value: bytes, key: bytes | None = b"AAPL", detail: str = "too big") -> DeadLetter:
    return DeadLetter(key, value, "oversize", detail, "candles", 2, 41, 1_704_067_200_000)


def batch_bytes(record: DeadLetterRecord) -> int:
    """Bytes of a record batch holding only this record, as the producer would send it."""
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 2**31 - 1)
    builder.append(0, 1_704_067_200_000, record.key, record.value, record.headers)
    return len(builder.build())


def test_small_values_are_kept_whole_with_their_size_and_digest() -> None:
    """A value that fits is stored unchanged; the headers still give its size and sha256."""
    record = bounded_record(letter(b'{"symbol": "AAPL"'), BUDGET)
    headers = dict(record.headers)
    assert record.key == b"AAPL" and record.value == b'{"symbol": "AAPL"'
    assert headers["dlq-original-size"] == b"17"
    assert headers["dlq-original-sha256"] == hashlib.sha256(b'{"symbol": "AAPL"').hexdigest().encode()
    assert headers["dlq-reason"] == b"oversize" and headers["dlq-source-offset"] == b"41"


def test_a_two_megabyte_value_is_cut_to_the_budget() -> None:
    """A 2 MB value becomes a record under the budget holding its first bytes, the size and digest of the whole."""
    value = os.urandom(2_000_000)
    record = bounded_record(letter(value), BUDGET)
    headers = dict(record.headers)
    assert batch_bytes(record) <= BUDGET
    assert len(record.value) > BUDGET - 2048 and value.startswith(record.value)
    assert headers["dlq-original-size"] == b"2000000"
    assert headers["dlq-original-sha256"] == hashlib.sha256(value).hexdigest().encode()


def test_a_huge_key_is_cut_too() -> None:
    """A key longer than any symbol is cut, and its original size recorded."""
    record = bounded_record(letter(b"x" * 10, key=b"k" * 5_000_000), BUDGET)
    assert record.key == b"k" * MAX_KEY_BYTES
    assert dict(record.headers)["dlq-original-key-size"] == b"5000000"
    assert batch_bytes(record) <= BUDGET


@given(
    st.binary(max_size=20_000),
    st.one_of(st.none(), st.binary(max_size=600)),
    st.text(max_size=3000),
    st.integers(min_value=4096, max_value=16_384),
)
def test_every_record_fits_its_budget(value: bytes, key: bytes | None, detail: str, budget: int) -> None:
    """Whatever the value, key and detail, the record's batch fits the budget and keeps a prefix of the value."""
    record = bounded_record(letter(value, key, detail), budget)
    assert batch_bytes(record) <= budget
    assert value.startswith(record.value)
    assert len(record.value) == len(value) or record.size == budget
