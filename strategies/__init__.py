"""Strategies: the ensemble's calibrated output in, BUY/SELL/HOLD with a confidence out."""
