"""``candlecast bench``: throughput and latency of the daemon, side by side with its ceilings.

One run, one machine, one real Kafka broker (a throwaway local one unless ``bootstrap_servers``
is given), measures:

1. the model ceiling: forward passes per second at the chosen batch size, nothing else running;
2. the I/O ceiling: a plain aiokafka consume-and-produce pass-through of the same candles;
3. the naive baseline: the daemon's own pipeline scoring one candle per forward pass;
4. the daemon end to end, per delivery mode: sustained throughput over a backlog of thousands of
   symbols; latency at a steady rate of half that throughput; latency under a burst of ten times
   the steady rate; and candle-close bursts, N symbols closing a candle at the same instant;
5. the ratios between them, and window memory per symbol.

The daemon runs in this process (``Daemon``, exactly as ``candlecast run`` builds it); a hook on
its pipeline records, for every signal, the candle record's timestamp (the producer's
CreateTime) and the wall-clock time at which the signal's batch was acknowledged by the broker
(``exactly_once``: its transaction committed). Candles for the rate-paced phases come from a
separate generator process, so that producing them does not take the daemon's event loop.
See docs/benchmarks.md for what each figure means.

One module per job: ``options`` (what to run), ``load`` (the candles), ``harness`` (the daemon
under test and its recorder), ``ceilings`` (model, I/O and naive), ``phases`` (the end-to-end
phases), ``memory`` (window memory), ``machine`` (what it ran on), ``report`` (the figures as a
table and JSON) and ``run`` (all of it, in order).
"""
