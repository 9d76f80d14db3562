"""A missing or wrong inventory value stops the play at its start, with one
line naming it, before anything is deployed (issue 15)."""
import shutil

import pytest
import yaml

from tests.unit.ansible import kit

checks = kit.checks_module()

ZONES = ["zone_a", "zone_b"]
GROUPS = {"zone_a": ["a1"], "zone_b": ["b1"], "cassandra": ["a1", "b1"], "keycloak": ["a1"]}


def host(zone, address, memory=2048, **more):
    return {"exchange_zones": ZONES, "exchange_zone": zone, "exchange_address": address,
            "exchange_host_memory_mb": memory, **more}


def problems(**hosts):
    return checks.inventory_problems(hosts, sorted(hosts), GROUPS)


def test_a_sound_inventory_has_no_problem():
    assert problems(a1=host("zone_a", "10.0.0.1", cassandra_heap="512M", keycloak_heap="512m"),
                    b1=host("zone_b", "10.0.0.2", cassandra_heap="1G")) == []


def test_unknown_zone_is_named():
    found = problems(a1=host("zone_a", "10.0.0.1"), b1=host("zone_q", "10.0.0.2"))
    assert found == ["b1: unknown zone 'zone_q' (exchange_zones: zone_a, zone_b)"]


def test_duplicate_address_names_both_hosts():
    found = problems(a1=host("zone_a", "10.0.0.1"), b1=host("zone_b", "10.0.0.1"))
    assert found == ["b1: duplicate address 10.0.0.1 (also a1)"]


def test_heap_larger_than_the_host_is_named():
    found = problems(a1=host("zone_a", "10.0.0.1", memory=1024, cassandra_heap="2G"),
                     b1=host("zone_b", "10.0.0.2"))
    assert found[0] == "a1: cassandra_heap 2G is larger than the host (1024 MiB)"


def test_heaps_adding_up_beyond_the_host_are_named():
    found = problems(a1=host("zone_a", "10.0.0.1", memory=1000, cassandra_heap="600M",
                             keycloak_heap="600m"),
                     b1=host("zone_b", "10.0.0.2"))
    assert found == ["a1: heaps and caches add up to 1200 MiB, more than the host (1000 MiB)"]


def test_a_heap_of_a_server_the_host_does_not_run_does_not_count():
    # b1 is not in group keycloak: its keycloak_heap (from group_vars/all) sizes nothing.
    assert problems(a1=host("zone_a", "10.0.0.1"),
                    b1=host("zone_b", "10.0.0.2", memory=1024, keycloak_heap="4G")) == []


@pytest.mark.parametrize("value", ["512", "1.5G", "512MB", "-1G", "0M", " 1G"])
def test_a_heap_that_is_not_a_size_is_named(value):
    found = problems(a1=host("zone_a", "10.0.0.1", cassandra_heap=value), b1=host("zone_b", "10.0.0.2"))
    assert found[0].startswith("a1: cassandra_heap: ")


def test_missing_values_are_named():
    bare = {"exchange_zones": ZONES}
    found = problems(a1=bare, b1=host("zone_b", "10.0.0.2"))
    assert found == ["a1: exchange_zone is not set (one of zone_a, zone_b)",
                     "a1: exchange_address is not set",
                     "a1: exchange_host_memory_mb is not a number of MiB: None"]


def test_a_host_outside_its_zone_group_is_named():
    found = checks.inventory_problems({"a1": host("zone_b", "10.0.0.1")}, ["a1"], GROUPS)
    assert found == ["a1: exchange_zone is 'zone_b' but the host is not in group zone_b"]


@pytest.mark.parametrize("inventory", ["local", "three-zones"])
def test_the_repo_inventories_are_sound(inventory):
    assert kit.problems_of(kit.INVENTORIES / inventory / "hosts.yml") == []


# ---------------------------------------------------------------- the play

def broken_copy(tmp_path, host_file, change):
    copy = tmp_path / "inventory"
    shutil.copytree(kit.INVENTORIES / "three-zones", copy)
    path = copy / "host_vars" / host_file
    values = yaml.safe_load(path.read_text())
    values.update(change)
    path.write_text(yaml.safe_dump(values))
    return copy / "hosts.yml"


@pytest.mark.parametrize("host_file,change,line", [
    ("zone-b.yml", {"exchange_zone": "zone_x"}, "inventory: zone-b: unknown zone 'zone_x'"),
    ("zone-c.yml", {"exchange_address": "169.254.100.11"},
     "inventory: zone-c: duplicate address 169.254.100.11 (also zone-a)"),
    ("zone-a.yml", {"exchange_host_memory_mb": 256},
     "inventory: zone-a: cassandra_heap 384M is larger than the host (256 MiB)"),
])
def test_the_play_stops_at_its_start_naming_the_value(tmp_path, host_file, change, line):
    result = kit.playbook(broken_copy(tmp_path, host_file, change),
                          "-e", f"exchange_host_dir={tmp_path}/hosts/{{{{ inventory_hostname }}}}",
                          "-e", "ansible_callback_result_format=json", timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert line in output
    # Nothing ran after the check: no task beyond it, no host directory.
    assert "TASK [supervisor" not in output and "changed=0" in output
    assert "changed=1" not in output
    assert not (tmp_path / "hosts").exists()
