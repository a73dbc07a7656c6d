"""The errors candlecast raises.

Every error derives from one root; callers tell a passing failure from a lasting one by type::

    CandlecastError
    ├── ConfigError        settings that cannot start the daemon (names the field)
    ├── ArtifactError      a model artifact that fails verification; the running model stays
    ├── DataError          a candle file that cannot be read into candles
    └── TransportError     a broker that cannot be reached or refused a request; the daemon retries

Rejected candles are not exceptions: validation returns a ``Rejection`` value, because a bad
message is an expected input that goes to the dead-letter topic, not a failure of the daemon.
"""

from __future__ import annotations


class CandlecastError(Exception):
    """Root of candlecast's errors."""


class ConfigError(CandlecastError):
    """Settings that cannot start the daemon."""


class ArtifactError(CandlecastError):
    """A model artifact that is missing, corrupt, or incompatible with the running daemon."""


class DataError(CandlecastError):
    """A candle file that cannot be read."""


class TransportError(CandlecastError):
    """A broker that cannot be reached or refused a request."""
