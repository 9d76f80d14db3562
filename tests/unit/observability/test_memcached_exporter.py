"""monitoring/memcached_exporter.py turns `stats` into Prometheus series."""
import importlib.util

from services.common.config import REPO_ROOT

spec = importlib.util.spec_from_file_location(
    "memcached_exporter", REPO_ROOT / "monitoring" / "memcached_exporter.py")
exporter = importlib.util.module_from_spec(spec)
spec.loader.exec_module(exporter)


def series(stats):
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in exporter.families(stats) for sample in family.samples}


def test_stats_become_hit_and_miss_counters_and_gauges():
    found = series({"get_hits": "7", "get_misses": "3", "curr_items": "12", "evictions": "1",
                    "cmd_set": "5", "uptime": "100"})
    assert found[("memcached_up", ())] == 1
    assert found[("memcached_commands_total", (("command", "get"), ("status", "hit")))] == 7
    assert found[("memcached_commands_total", (("command", "get"), ("status", "miss")))] == 3
    assert found[("memcached_current_items", ())] == 12
    assert found[("memcached_items_evicted_total", ())] == 1


def test_an_unreachable_memcached_reads_as_down():
    assert series(None) == {("memcached_up", ()): 0}
