"""The wallets service: a double-entry ledger in PostgreSQL (see docs/wallets.md)."""
