"""marketdata: trade history and candles in Cassandra, hot reads from Memcached
(docs/marketdata.md, cql/README.md)."""
