"""The errors candlecast raises.

Every error derives from one root; callers tell a passing failure from a lasting one by type::

    CandlecastError
    ├── ConfigError        settings that cannot start the daemon (names the field)
    ├── ArtifactError      a model artifact that fails verification; the running model stays
    ├── DataError          a candle file that cannot be read into candles
    ├── TransportError     a broker that cannot be reached or refused a request; the daemon retries
    ├── FencedError        another producer took over this instance's transactional id; the daemon exits
    └── ShutdownDeadlineError  a stop's drain passed its deadline; what was in flight was abandoned

Each class names the exit status ``candlecast`` ends with when the error stops it.

Rejected candles are not exceptions: validation returns a ``Rejection`` value, because a bad
message is an expected input that goes to the dead-letter topic, not a failure of the daemon.
"""

from __future__ import annotations


class CandlecastError(Exception):
    """Root of candlecast's errors."""

    exit_status = 1


class ConfigError(CandlecastError):
    """Settings that cannot start the daemon."""

    exit_status = 2


class ArtifactError(CandlecastError):
    """A model artifact that is missing, corrupt, or incompatible with the running daemon."""


class DataError(CandlecastError):
    """A candle file that cannot be read."""


class TransportError(CandlecastError):
    """A broker that cannot be reached or refused a request."""


class FencedError(CandlecastError):
    """Another producer started with this instance's transactional id (a second instance with the
    same ``kafka.instance_id``), or the broker aborted a transaction this instance held too long.
    Its successor owns the id now: the daemon stops instead of fencing it back."""

    exit_status = 3


class ShutdownDeadlineError(CandlecastError):
    """A stop could not publish and commit what was in flight before ``shutdown.deadline_s``: the
    open transaction was aborted, and the records' next owner takes them again."""

    exit_status = 4
