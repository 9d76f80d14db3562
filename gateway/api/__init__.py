"""The gateway's HTTP APIs, one blueprint each: ``binance`` (/api/v3) and ``native`` (/api/v1)."""
