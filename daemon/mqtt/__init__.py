"""The optional MQTT transport (aiomqtt, MQTT 5): signals out, and candles in for edge deployments.

One module per job: ``connection`` (one client's connection: TLS, reconnection with backoff, a
failure mapped to a ``ConfigError`` naming the setting or a retried ``TransportError``),
``publisher`` (signals out, buffered, at least once), ``source`` (candles in, merged with Kafka's),
``metrics`` (the transport's Prometheus metrics) and ``transport`` (what the daemon runs of it,
from its settings). docs/mqtt.md describes the behaviour.
"""
