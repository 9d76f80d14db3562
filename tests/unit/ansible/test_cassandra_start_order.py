"""roles/cassandra starts its nodes in batches (cassandra_start_batches): the
seeds together (seeds do not bootstrap), then each other node alone (Cassandra
refuses two bootstrapping at once). Evaluated by ansible-playbook on each
repo inventory, with the exchange role's defaults as site.yml has them; a
debug task runs on the controller, so no zone needs to exist."""
import json
import re
import sys

import pytest

from tests.unit.ansible import kit

PLAY = """
- hosts: cassandra
  gather_facts: false
  roles: [exchange]
  tasks:
    - ansible.builtin.include_vars: {defaults}
    - ansible.builtin.debug: {{msg: "BATCHES {{{{ cassandra_start_batches | to_json }}}}"}}
      run_once: true
"""


@pytest.mark.parametrize("inventory, batches", [
    # group_vars: the first two zones' nodes are the seeds.
    ("three-zones", [["zone-a", "zone-b"], ["zone-c"]]),
    # One node, its own seed (no EXCHANGE_CASSANDRA_SEEDS).
    ("local", [["localhost"]]),
])
def test_the_seeds_start_together_then_each_other_node_alone(tmp_path, inventory, batches):
    play = tmp_path / "order.yml"
    play.write_text(PLAY.format(defaults=kit.ANSIBLE_DIR / "roles/cassandra/defaults/main.yml"))
    result = kit.run("ansible-playbook", "-i", str(kit.INVENTORIES / inventory / "hosts.yml"),
                     str(play), "-e", f"ansible_python_interpreter={sys.executable}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = re.search(r"BATCHES (\[.*\])", result.stdout)
    assert found, result.stdout[-2000:]
    assert json.loads(found.group(1)) == batches
