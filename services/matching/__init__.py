"""Matching engine core: a pure, deterministic order book per market (see docs/matching-engine.md)."""
