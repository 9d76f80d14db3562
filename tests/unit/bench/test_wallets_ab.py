"""bench/wallets_ab.py reads the wallets bench's printed figures: the
coordinator's A/B must fail loudly, not print a table of nothing, when the
bench's output changes."""
import pytest

from bench.wallets_ab import parse, verdict

OUTPUT = """\
machine: vm: 2 x AMD EPYC, Python 3.11.7, PostgreSQL 15.18 (fsync=on, synchronous_commit=on), same host
setup: 200 funded users in 15.2 s (untimed)
settle_trades: 20000 trades in 200 batches of 100, one settler: 8,430 trades/s (2.37 s)
  per batch: p50 11.45 ms  p95 19.74 ms  p99 28.71 ms  max 35.58 ms
  CPU per trade: bench process 31 us + PostgreSQL 66 us; load average 1.62 -> 1.93 (2 cores)
settle_batches: 20000 trades in 200 batches of 100, one settler, pipelined, 10 batches per call: 9,431 trades/s (2.12 s)
  per call of 10 batches: p50 68.75 ms  p95 89.68 ms  p99 89.68 ms  max 89.68 ms
  CPU per trade: bench process 46 us + PostgreSQL 61 us; load average 1.93 -> 1.93 (2 cores)
  PostgreSQL per trade (pg_stat_statements, 20000 trades): top-level execution 64.8 us (59% of the wall time), WAL 17.98 records / 2193 bytes (full-page images 0.000), shared buffers 64.7 accessed, commits 0.0328, cluster WAL flushes 0.0150 (others' included)
settle_trades: 20000 trades in batches of 100, one settler per market (BTC-USDT, ETH-USDT) concurrently: 10,060 trades/s (1.99 s)
  per batch: p50 17.17 ms  p95 27.28 ms  p99 30.08 ms  max 32.62 ms
  CPU per trade: bench process 49 us + PostgreSQL 64 us; load average 1.93 -> 2.47 (2 cores)
audit: clean (2.44 s, untimed)
"""


def test_every_settlement_phase_is_read_with_its_cpu_per_trade():
    figures = parse(OUTPUT)
    assert figures["one settler"] == [8430, 31, 66, 1.62]  # load at the phase's start
    assert figures["pipelined"] == [9431, 46, 61, 1.93]
    assert figures["per market"] == [10060, 49, 64, 1.93]
    assert figures["pipelined (statements)"] == [64.8, 17.98, 2193, 64.7]


def test_a_phase_missing_from_the_output_is_missing_from_the_figures():
    figures = parse(OUTPUT.replace("pipelined", "overlapped"))
    assert "pipelined" not in figures
    with pytest.raises(KeyError):
        figures["pipelined"]


def test_verdict_compares_the_new_median_with_the_old_range():
    assert "not worse" in verdict([100, 104, 110], [108, 109, 130])
    assert "WORSE" in verdict([100, 104, 110], [111, 112, 90])
