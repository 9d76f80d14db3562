"""The push bench's reading of its gateway probe's lines (bench/push_gateway.py):
lines of older probes (6 fields) and of session 9's (10 fields) both read."""
from __future__ import annotations

from bench.push_bench import hub_lags


def test_probe_lines_old_and_new_are_read_per_window(tmp_path):
    # at, lag ms, CPU s, longest collector pause ms, full collections so far,
    # longest full CPU ms[, young so far, found so far, longest push ms, its CPU ms]
    (tmp_path / "push-bench-gateway-0.hub-lag").write_text(
        "100.0 5.0 1.00 0.0 1 50.0 10 0 0.0 0.0\n"
        "101.0 120.0 1.10 2.0 1 50.0 12 0 110.0 9.0\n"
        "102.0 20.0 1.15 3.0 2 55.0 13 40 30.0 8.0\n"
        "103.0 999.0 1.20 0.0 2 55.0 20 40 500.0 50.0\n")   # after the window
    (tmp_path / "push-bench-gateway-1.hub-lag").write_text(
        "100.0 5.0 1.00 0.0 0 0.0\n"
        "101.0 30.0 1.05 1.0 0 0.0\n")
    new, old = hub_lags(tmp_path, 2, since=100.5, until=102.5)
    assert "p50 20 ms, max 120 ms; 1 of 2 lines over 100 ms, CPU in them 0.10 s" in new
    assert "1 full collections" in new and "40 unreachable objects" in new
    assert "3 young collections" in new
    assert "longest push per line p50 30 ms, max 110 ms, its CPU p50 8 ms, max 9 ms" in new
    assert "max 30 ms" in old and "0 full collections" in old and "0 young collections" in old
