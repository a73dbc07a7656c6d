"""The asyncio service and its pure core (candles, windows, batching, signals)."""
