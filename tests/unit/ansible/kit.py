"""Running Ansible from tests: the repo's ansible/ directory (its ansible.cfg)
and the virtualenv's interpreter, as docs/operations.md tells operators to."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from services.common.config import REPO_ROOT

ANSIBLE_DIR = REPO_ROOT / "ansible"
INVENTORIES = ANSIBLE_DIR / "inventories"
BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}


def run(tool: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=ANSIBLE_DIR, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def playbook(inventory: Path | str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run("ansible-playbook", "-i", str(inventory), "site.yml",
               "-e", f"ansible_python_interpreter={sys.executable}", *args, timeout=timeout)


def inventory_list(inventory: Path | str) -> dict:
    result = run("ansible-inventory", "-i", str(inventory), "--list")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def checks_module():
    spec = importlib.util.spec_from_file_location(
        "inventory_checks", ANSIBLE_DIR / "plugins" / "filter" / "inventory_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def problems_of(inventory: Path | str) -> list[str]:
    listing = inventory_list(inventory)
    hostvars = listing["_meta"]["hostvars"]
    groups = {name: group.get("hosts", []) for name, group in listing.items() if name != "_meta"}
    # Hosts of child groups: ansible-inventory lists each group's direct hosts.
    return checks_module().inventory_problems(hostvars, sorted(hostvars), groups)
