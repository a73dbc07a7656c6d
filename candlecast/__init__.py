"""candlecast: a trading-signal daemon scoring OHLCV candles from Kafka with a TorchScript ensemble."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("candlecast")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
