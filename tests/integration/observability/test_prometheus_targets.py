"""Every part of the running stack is scraped by Prometheus, is up, and
exports its key series (done-when of issue 16)."""
from services.common.config import service_names

from stack.monitoring import app_targets

from obs_helpers import wait_until

SERVER_JOBS = {"prometheus", "alertmanager", "rabbitmq", "rabbitmq-queues", "postgresql",
               "memcached", "cassandra", "keycloak", "node"}

# (what, PromQL that must return at least one series)
KEY_SERIES = [
    ("RabbitMQ queue depths", 'rabbitmq_detailed_queue_messages_ready{queue="wallets.settlement"}'),
    ("PostgreSQL up", 'pg_up == 1'),
    ("Memcached up", 'memcached_up == 1'),
    ("Cassandra client request latency", 'cassandra_clientrequest_latency_count'),
    ("Keycloak JVM", '{job="keycloak", __name__=~"jvm_memory_used_bytes|base_memory_usedHeap_bytes"}'),
    ("machine memory", 'node_memory_MemAvailable_bytes'),
    ("outbox backlog", 'exchange_outbox_backlog{stream="all"}'),
    ("outbox relay lag", 'exchange_outbox_oldest_age_seconds{stream="all"}'),
    ("settlement lag", 'exchange_settlement_lag_seconds'),
    ("parked events", 'exchange_parked_events{service="orders"}'),
    ("engine book sizes", 'exchange_engine_book_orders{service="matching"}'),
    ("outbox relays", 'exchange_outbox_relay_active'),
    ("gateway HTTP latency", 'exchange_http_request_duration_seconds_count{service="gateway"}'),
    ("alert rules loaded", 'ALERTS or vector(1)'),
]


def test_every_target_is_up_and_every_service_and_server_is_scraped(prometheus, settings):
    expected_apps = {name for name, _ in app_targets(settings)}
    assert {"marketdata", "matching", "orders", "users", "wallets", "gateway"} <= expected_apps
    problems = {}

    def all_up():
        targets = prometheus.targets()
        jobs = {t["labels"]["job"] for t in targets}
        apps = {t["labels"].get("service") for t in targets if t["labels"]["job"] == "exchange"}
        problems.update(
            down=[(t["labels"]["job"], t["labels"].get("service"), t["lastError"])
                  for t in targets if t["health"] != "up"],
            missing_jobs=SERVER_JOBS - jobs, missing_apps=expected_apps - apps)
        return not any(problems.values())
    wait_until(all_up, timeout=30, what=lambda: f"every target up ({problems})")


def test_every_service_reports_entrypoint_latency_and_the_key_series_exist(prometheus, settings,
                                                                           stack_rpc):
    for name, _ in app_targets(settings):
        if name in service_names():
            getattr(stack_rpc, name).health()  # at least one call to time

    for name, _ in app_targets(settings):
        if name in service_names():
            wait_until(lambda: prometheus.query(
                f'exchange_entrypoint_duration_seconds_count{{service="{name}", entrypoint="health"}}'),
                timeout=20, what=f"{name}'s entrypoint latency series")
            assert prometheus.query(
                f'exchange_entrypoint_duration_seconds_bucket{{service="{name}", le="+Inf"}}')
    missing = [what for what, expr in KEY_SERIES if not prometheus.query(expr)]
    assert missing == []
    # The first periodic audit runs when wallets starts (an eager timer).
    wait_until(lambda: prometheus.query(
        'exchange_ledger_audit_findings{service="wallets"} '
        'and exchange_ledger_audit_timestamp_seconds{service="wallets"} > 0'),
        timeout=90, every=5, what="the last ledger audit's result and time")


def test_recording_rules_produce_the_golden_signals(prometheus):
    wait_until(lambda: prometheus.query('exchange:entrypoint_calls:rate1m{entrypoint="health"}'),
               timeout=30, what="recorded call rates")
    rules = prometheus.query('count(exchange:entrypoint_latency_seconds:p99_1m)')
    assert rules and float(rules[0]["value"][1]) > 0
