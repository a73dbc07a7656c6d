"""The stream's metrics, read from the signal store at scrape time: in the daemon and the stream server."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from daemon.signal_store import SignalStore


class StreamCollector(Collector):
    """The stream's clients and the ones cut off for falling behind, read from the store at scrape time."""

    def __init__(self, store: SignalStore) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        clients = GaugeMetricFamily("candlecast_stream_clients", "Clients connected to the signal stream.")
        clients.add_metric([], self._store.clients)
        cut_off = CounterMetricFamily(
            "candlecast_stream_clients_cut_off", "Stream clients disconnected for falling behind their buffer."
        )
        cut_off.add_metric([], self._store.disconnected)
        return [clients, cut_off]
