"""Unit tier: one module of treadle at a time, no Runtime, no sleeping."""
