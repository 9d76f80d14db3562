"""Every alert rule of monitoring/rules is unit-tested with promtool, firing
and quiet, and carries a runbook section that exists in docs/operations.md."""
import re
import shutil
import subprocess

import pytest
import yaml

from services.common.config import REPO_ROOT

MONITORING = REPO_ROOT / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool: Debian package "
                                    "prometheus, installed by scripts/bootstrap.sh")


def alert_rules() -> list[dict]:
    rules = []
    for path in sorted((MONITORING / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


def rule_tests() -> list[dict]:
    return yaml.safe_load((MONITORING / "tests" / "alerts_test.yml").read_text())["tests"]


@needs_promtool
def test_rule_files_pass_promtool_check():
    result = subprocess.run([PROMTOOL, "check", "rules", *map(str, (MONITORING / "rules").glob("*.yml"))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_of_alerts_pass():
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"],
                            cwd=MONITORING / "tests", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_is_tested_both_firing_and_quiet():
    firing, quiet = set(), set()
    for test in rule_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names, "no alert rules found"
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"


def test_every_alert_has_a_runbook_section_and_a_severity():
    anchors = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in (REPO_ROOT / "docs" / "operations.md").read_text().splitlines()
               if line.startswith("#")}
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/operations.md#{rule['alert'].lower()}", rule["alert"]
        assert rule["alert"].lower() in anchors, f"docs/operations.md lacks ### {rule['alert']}"


def test_every_alert_is_in_the_readmes_table():
    """README's "Monitoring, alerts and logs" lists the alerts an operator gets."""
    readme = (REPO_ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \((?:page|ticket)\) \|", readme, re.M))
    listed = {name for row in rows for name in row if name}
    assert {rule["alert"] for rule in alert_rules()} - listed == set()
