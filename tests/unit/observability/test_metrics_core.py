"""services.common.metrics and services.common.logs without servers."""
import json
import logging

import pytest
from nameko.events import EventHandler
from nameko.rpc import Rpc
from nameko.timer import Timer
from prometheus_client import REGISTRY

from services.common import logs, metrics
from services.common.errors import InvalidInput
from services.common.rpc_requests import RequestRpc


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_entrypoint_kinds_follow_the_entrypoint_classes():
    assert metrics.entrypoint_kind(Rpc.__new__(Rpc)) == "rpc"
    assert metrics.entrypoint_kind(RequestRpc.__new__(RequestRpc)) == "rpc"
    assert metrics.entrypoint_kind(EventHandler.__new__(EventHandler)) == "event"
    assert metrics.entrypoint_kind(Timer.__new__(Timer)) == "timer"


def test_batch_timer_counts_messages_of_good_batches_and_failed_batches():
    before = sample("exchange_consumer_messages_total", queue="unit.q")
    failed = sample("exchange_consumer_batch_errors_total", queue="unit.q")
    with metrics.BatchTimer("unit.q", 7):
        pass
    with pytest.raises(ValueError):
        with metrics.BatchTimer("unit.q", 3):
            raise ValueError("boom")
    assert sample("exchange_consumer_messages_total", queue="unit.q") == before + 7
    assert sample("exchange_consumer_batch_errors_total", queue="unit.q") == failed + 1
    assert sample("exchange_consumer_batch_duration_seconds_count", queue="unit.q") >= 2


def test_lag_is_observed_from_executed_at_and_ignores_bad_times():
    child = metrics.EVENT_LAG.labels("unit.lag")
    count = sample("exchange_event_lag_seconds_count", queue="unit.lag")
    total = sample("exchange_event_lag_seconds_sum", queue="unit.lag")
    metrics.observe_lag(child, 1_000, now_ms=3_500)
    metrics.observe_lag(child, "1000", now_ms=3_500)
    metrics.observe_lag(child, True, now_ms=3_500)
    metrics.observe_lag(child, 9_000, now_ms=3_500)  # in the future: clock skew
    assert sample("exchange_event_lag_seconds_count", queue="unit.lag") == count + 1
    assert sample("exchange_event_lag_seconds_sum", queue="unit.lag") == pytest.approx(total + 2.5)


def test_audit_result_and_time_are_exported_once_an_audit_ran():
    metrics.record_audit(2, now=1234.0)
    assert sample("exchange_ledger_audit_findings") == 2
    assert sample("exchange_ledger_audit_timestamp_seconds") == 1234.0
    metrics.record_audit(0, now=1300.0)
    assert sample("exchange_ledger_audit_findings") == 0


def test_cache_lookups_count_hits_and_misses():
    hits = sample("exchange_marketdata_cache_lookups_total", kind="get_many", result="hit")
    misses = sample("exchange_marketdata_cache_lookups_total", kind="get_many", result="miss")
    metrics.count_cache_lookups("get_many", hits=3, misses=1)
    assert sample("exchange_marketdata_cache_lookups_total", kind="get_many", result="hit") == hits + 3
    assert sample("exchange_marketdata_cache_lookups_total", kind="get_many", result="miss") == misses + 1


def test_metrics_port_is_off_unless_configured(monkeypatch):
    monkeypatch.delenv("EXCHANGE_METRICS_PORT", raising=False)
    assert metrics.configured_port({}) is None
    assert metrics.configured_port({"METRICS_PORT": 0}) == 0
    monkeypatch.setenv("EXCHANGE_METRICS_PORT", "19299")
    assert metrics.configured_port({}) == 19299
    assert metrics.configured_port({"METRICS_PORT": "off"}) is None


def test_message_ids_of_commands_trades_and_orders():
    assert logs.message_ids({"command": {"type": "place_order", "order_id": 17, "user_id": "u1"}}) \
        == {"order_ids": ["17"], "user_id": "u1"}
    trade = {"trade_id": "BTC-USDT-5", "maker_order_id": 3, "taker_order_id": 9,
             "taker_user_id": "bob", "executed_at": 1}
    assert logs.message_ids(trade) == {"order_ids": ["3", "9"], "trade_id": "BTC-USDT-5",
                                       "user_id": "bob"}
    assert logs.message_ids([1, 2]) == {}
    assert logs.message_ids({"order_id": True}) == {}
    # A /api/v3 answer names its order Binance's way (the gateway's request
    # line, which `make logs ORDER=<id>` looks for).
    assert logs.message_ids({"symbol": "BTCUSDT", "orderId": 2087, "clientOrderId": "x",
                             "status": "NEW"}) == {"order_ids": ["2087"]}


def test_message_ids_of_a_batchs_answers():
    """orders.place_orders answers a list: every placed order is named (the
    order path's 'orders' line, tests/integration/observability), the user
    only when the batch is one request."""
    answers = [{"order": {"order_id": 5, "user_id": "ann"}},
               {"error": {"code": "INSUFFICIENT_FUNDS", "message": "..."}},
               {"order": {"order_id": 6, "user_id": "bob"}}]
    assert logs.message_ids(answers) == {"order_ids": ["5", "6"]}
    assert logs.message_ids(answers[:1]) == {"order_ids": ["5"], "user_id": "ann"}


def test_json_lines_carry_ids_and_follow_reads_one_order_in_time_order(tmp_path):
    formatter = logs.JsonFormatter("orders")
    lines = []
    for created, msg, ids in ((3.0, "settled", {"trade_id": "M-1"}),
                              (1.0, "placed", {"order_ids": ["42"]}),
                              (2.0, "traded", {"order_ids": ["42", "7"], "trade_id": "M-1"}),
                              (2.5, "other order", {"order_ids": ["8"]})):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, msg, (), None)
        record.created = created
        record.ids = ids
        lines.append(formatter.format(record))
    parsed = [json.loads(line) for line in lines]
    assert parsed[1]["order_id"] == "42" and parsed[1]["process"] == "orders"
    assert parsed[2]["order_ids"] == ["42", "7"]
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "orders.jsonl").write_text("\n".join(lines) + "\nnot json\n")
    followed = logs.follow("42", tmp_path)
    assert [line["msg"] for line in followed] == ["placed", "traded", "settled"]
    assert "order_id=42" in logs.render(followed[0])


def test_json_logs_are_not_installed_without_a_log_dir(monkeypatch):
    monkeypatch.delenv("EXCHANGE_LOG_DIR", raising=False)
    monkeypatch.setattr(logs, "_process", None)
    assert logs.install_for_process("unit") is False


def test_coded_errors_keep_their_code_for_the_error_counter():
    from services.common.errors import code_of
    assert code_of(InvalidInput(message="bad")) == "INVALID_INPUT"
    assert code_of(RuntimeError("boom")) is None


def test_batched_json_file_writes_in_batches_and_rotates(tmp_path):
    handler = logs.BatchedFileHandler(tmp_path / "p.jsonl", max_bytes=400, backups=2)
    handler.setFormatter(logs.JsonFormatter("p"))
    logger = logging.getLogger("unit.batched")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        handler.flushed_at = __import__("time").monotonic()
        logger.info("first")
        assert (tmp_path / "p.jsonl").read_text() == ""
        logger.warning("second")  # a warning writes at once, with what waited
        assert [json.loads(line)["msg"] for line in
                (tmp_path / "p.jsonl").read_text().splitlines()] == ["first", "second"]
        for n in range(20):
            logger.warning("line %d", n)
        assert (tmp_path / "p.jsonl.1").exists() and not (tmp_path / "p.jsonl.3").exists()
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_a_metrics_port_in_use_does_not_stop_the_service_and_binds_once_free():
    """Another process may hold a fixed port when a service starts (a CI
    run's users service died of it, when our ports lay in the kernel's
    ephemeral range). The service starts anyway; /metrics binds when the
    port is free."""
    import socket

    import eventlet
    from nameko.containers import ServiceContainer

    from services.common.metrics import ServiceMetrics

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]

    class Service:
        name = "metrics_port_in_use"
        metrics = ServiceMetrics(port=port)

    container = ServiceContainer(Service, {})
    container.start()
    try:
        provider = next(iter(container.dependencies))
        assert provider.sock is None            # started without its endpoint
        holder.close()
        for _ in range(50):                     # bounded: the retry runs every second
            if provider.sock is not None:
                break
            eventlet.sleep(0.1)
        assert provider.sock is not None and provider.port == port
    finally:
        container.stop()
        holder.close()
