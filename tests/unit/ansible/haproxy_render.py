"""roles/haproxy's haproxy.cfg rendered by Ansible as the role renders it
(its template, its defaults, a host's inventory variables), and checked
with the installed HAProxy (``haproxy -c``), as the role's task validates it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.unit.ansible import kit

ROLE = kit.ANSIBLE_DIR / "roles" / "haproxy"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

# Only the role's template task, on the control machine (delegate_to: the
# zone hosts' netns connection is not needed to render): the role's defaults
# are loaded as a vars file, the lowest precedence a test's -e still beats.
PLAYBOOK = """
- hosts: "{{ render_host }}"
  gather_facts: false
  vars_files:
    - "%(defaults)s"
  tasks:
    - name: Render haproxy.cfg
      ansible.builtin.template:
        src: "%(template)s"
        dest: "{{ render_dest }}"
        mode: "0600"
      delegate_to: localhost
"""


def render(inventory: Path | str, host: str, directory: Path, **variables) -> Path:
    """``directory``/haproxy.cfg of ``host``; ``variables`` override the
    role's defaults (``haproxy_dir`` is ``directory``)."""
    playbook = directory / "render-haproxy.yml"
    playbook.write_text(PLAYBOOK % {"defaults": ROLE / "defaults" / "main.yml",
                                    "template": ROLE / "templates" / "haproxy.cfg.j2"})
    dest = directory / "haproxy.cfg"
    extra = {"render_host": host, "render_dest": str(dest), "haproxy_dir": str(directory),
             "ansible_python_interpreter": sys.executable, **variables}
    result = kit.run("ansible-playbook", "-i", str(inventory), str(playbook),
                     "-e", json.dumps(extra), timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return dest


def check(config: Path) -> subprocess.CompletedProcess:
    """``haproxy -c``: the configuration is valid for the installed HAProxy."""
    return subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True,
                          timeout=60)
