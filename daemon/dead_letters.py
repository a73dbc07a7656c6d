"""Dead-letter records that always fit the broker's size limits.

A rejected message can be as large as the consumer accepts: a compressed multi-megabyte value
passes the candles topic but not, uncompressed, the producer's ``max_request_size`` or the
dead-letter topic's ``max.message.bytes``, and a dead letter the broker refuses would be retried
forever. So the record keeps only as much of the value as fits a byte budget for the whole
record, and headers give the original size and sha256: enough to find and compare the message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from daemon.signal import DeadLetter

MAX_KEY_BYTES = 256
"""Longer keys are cut too (a valid key is a symbol of at most 64 characters)."""
RECORD_OVERHEAD = 64
"""Bytes a record takes beside its key, value and headers (lengths, deltas, attributes), with margin."""
HEADER_OVERHEAD = 10
"""Bytes each header takes beside its name and value (two length varints), with margin."""


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """What is produced to the dead-letter topic for one rejected message."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def size(self) -> int:
        """Upper bound of the record's size in a batch."""
        return (
            RECORD_OVERHEAD
            + len(self.key or b"")
            + len(self.value)
            + sum(HEADER_OVERHEAD + len(name) + len(value) for name, value in self.headers)
        )


def bounded_record(letter: DeadLetter, max_bytes: int) -> DeadLetterRecord:
    """The dead letter as a record of at most ``max_bytes``: the value, cut if needed, with
    ``dlq-original-size`` and ``dlq-original-sha256`` headers describing the whole value."""
    headers = [
        *letter.headers(),
        ("dlq-original-size", str(len(letter.value)).encode()),
        ("dlq-original-sha256", hashlib.sha256(letter.value).hexdigest().encode()),
    ]
    key = letter.key
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers.append(("dlq-original-key-size", str(len(key)).encode()))
        key = key[:MAX_KEY_BYTES]
    room = max_bytes - DeadLetterRecord(key, b"", headers).size
    if room < 0:
        raise ValueError(f"a dead-letter budget of {max_bytes} bytes cannot hold its headers")
    return DeadLetterRecord(key, letter.value[:room], headers)
