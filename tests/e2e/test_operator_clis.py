"""The operators' command-line tools against the running stack: a refusal is
one line, ``CODE: message`` on stderr, exit status 1, never a traceback (the
users CLI printed a Nameko RemoteError's traceback for a key the service
refused, and python-keycloak's for a wrong password)."""
import os
import subprocess
import sys

import pytest

from services.common.config import REPO_ROOT
from stack.seed import DEMO_PASSWORD


def run(*args, password=DEMO_PASSWORD):
    env = {**os.environ, "EXCHANGE_CLI_PASSWORD": password, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, password, line", [
    (("create-key", "demo-alice", "refused", "--permissions", "withdraw"), DEMO_PASSWORD,
     "APIKEY_WITHDRAW_NEEDS_IP_ALLOWLIST: "),
    (("create-key", "demo-alice", "refused"), "not-the-password", "LOGIN_FAILED: "),
    (("token", "demo-alice"), "not-the-password", "LOGIN_FAILED: ")])
def test_a_users_cli_refusal_is_its_code_and_message(args, password, line):
    done = run("services.users.cli", *args, password=password)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(line), done.stderr


def test_a_registry_cli_refusal_is_its_code_and_message():
    done = run("services.registry.cli", "halt", "NOPE-USDT", "--admin", "demo-admin",
               password="not-the-password")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("LOGIN_FAILED: "), done.stderr
