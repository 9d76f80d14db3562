"""The exchange's own PostgreSQL figures (monitoring/postgres-queries.yml) run
on any connection the exporter may hold.

The exporter starts with the servers, before the migrations, and keeps one
connection for as long as it works. A connection opened before migration 002
set the database's search_path has only ``"$user", public``: a query naming
``order_fills`` without its schema failed on it for a whole CI run, and the
settlement-lag and parked-events series were simply absent. Each query runs
here as the exporter's user on exactly such a session."""
import psycopg
import pytest
import yaml

from stack.monitoring import MONITORING_DIR

QUERIES = yaml.safe_load((MONITORING_DIR / "postgres-queries.yml").read_text())


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query_runs_without_the_databases_search_path(settings, name):
    spec = QUERIES[name]
    with psycopg.connect(settings.postgres_dsn()) as conn:  # the exporter's login (stack/monitoring.py)
        conn.execute('SET search_path = "$user", public')
        cursor = conn.execute(spec["query"])
        columns = [c.name for c in cursor.description]
        rows = cursor.fetchall()
    assert rows, f"{name} returned no row: its series would be absent, not 0"
    declared = [next(iter(m)) for m in spec["metrics"]]
    assert columns == declared, f"{name}: columns {columns} vs metrics {declared}"
