"""Rolling upgrade under order load (issue 15): ansible/upgrade.yml restarts
every service and gateway of one zone host at a time (serial: 1), draining
the host's gateway at the edge first, while two traders send crossing orders
through the edge HAProxy. Every process of ours is restarted (new pid), no
order is refused or given up on (clients only retry), every acknowledged
order is kept, every trade settles once and the audit is clean.

Needs `scripts/zones.sh up` and the whole three-zones play
(docs/operations.md); skipped otherwise.
"""
import re
import subprocess
import sys
import time

import pytest

from tests.integration.zones import zone_kit as kit
from tests.integration.zones.test_zone_loss_trading import (
    READY_TIMEOUT_S, check_every_acknowledged_order_is_kept, check_settled_once_and_audit_clean,
    deployment_healthy)
from tests.unit.ansible import kit as ansible_kit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not kit.REQUIRED and not kit.deployed(),
                                 reason="three-zones deployment not running")]


def ours(zone: str) -> dict[str, int | None]:
    return {name: pid for name, (_, pid) in kit.programs(zone).items()
            if name == "gateway" or name.startswith("service-")}


# The play restarts and waits for 21 processes one zone at a time: 4-5 min a
# zone at load 40-60 (session 7), over pytest.ini's 600 s per test.
@pytest.mark.timeout(2400)
def test_a_rolling_upgrade_refuses_no_order():
    assert kit.wait_for(deployment_healthy, READY_TIMEOUT_S, 5), "deployment not healthy"
    traders = kit.new_trader({"USDT": "10000000"}), kit.new_trader({"BTC": "1000"})
    before = {zone: ours(zone) for zone in kit.ADDRESSES}
    load = kit.OrderLoad(*traders).start()
    try:
        assert kit.wait_for(lambda: len(load.acks) >= 10, 120, 1), "no steady load before the upgrade"
        started = time.monotonic()
        result = subprocess.run(
            [str(ansible_kit.BIN / "ansible-playbook"), "-i", "inventories/three-zones/hosts.yml",
             "upgrade.yml", "-e", f"ansible_python_interpreter={sys.executable}"],
            cwd=ansible_kit.ANSIBLE_DIR, env=ansible_kit.env(), capture_output=True, text=True,
            timeout=1800)
        took = time.monotonic() - started
        time.sleep(5)
    finally:
        load.stop()
    assert result.returncode == 0, result.stdout[-4000:]
    assert re.search(r"zone-c\s+:\s+ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", result.stdout)
    after = {zone: ours(zone) for zone in kit.ADDRESSES}
    for zone in kit.ADDRESSES:
        assert set(after[zone]) == set(before[zone])
        unchanged = [name for name in before[zone] if after[zone][name] == before[zone][name]]
        assert not unchanged, f"{zone}: not restarted: {unchanged}"
    stopped = load.longest_gap(started, started + took)
    print(f"\nrolling upgrade of 3 zones took {took:.0f} s; {len(load.acks)} orders acknowledged, "
          f"{len(load.retries)} retries, longest stretch without an acknowledgement {stopped:.1f} s")
    assert not load.refusals, load.refusals[:5]
    check_every_acknowledged_order_is_kept(load)
    check_settled_once_and_audit_clean()
    assert kit.wait_for(deployment_healthy, READY_TIMEOUT_S, 5)
