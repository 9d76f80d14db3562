"""ansible/ is ansible-lint clean (production profile) and both inventories
pass the playbook's syntax check."""
import pytest

from tests.unit.ansible import kit


def test_ansible_lint_is_clean():
    result = kit.run("ansible-lint", "--nocolor", "--profile", "production", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.mark.parametrize("inventory", ["local", "three-zones"])
def test_site_yml_parses_with_each_inventory(inventory):
    result = kit.playbook(kit.INVENTORIES / inventory / "hosts.yml", "--syntax-check", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
