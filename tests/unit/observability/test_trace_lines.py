"""The trace lines (per RPC, per consumed message, per gateway request) are
written to the JSON log only, and not made at all without one. In a fresh
interpreter: JSON logs install once per process and change the root logger."""
import json
import subprocess
import sys

from services.common.config import REPO_ROOT

SCRIPT = r"""
import io, json, logging, os, sys
plain = io.StringIO()
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=plain)  # as `nameko run`
from services.common import logs

before = logs.TRACE.isEnabledFor(logging.INFO)
logs.trace("traced before install")
os.environ["EXCHANGE_LOG_DIR"] = sys.argv[1]
installed = logs.install_for_process("unit")
logs.trace("traced %s", "after install", ids={"order_id": 42})
logging.getLogger("exchange.other").info("an ordinary line")
logging.shutdown()
print(json.dumps({"before": before, "installed": installed, "plain": plain.getvalue()}))
"""


def test_trace_lines_go_to_the_json_log_only(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["before"] is False and seen["installed"] is True
    # The plain log has the ordinary line and no trace line.
    assert seen["plain"].splitlines() == ["an ordinary line"]
    lines = [json.loads(line) for line in (tmp_path / "json" / "unit.jsonl").read_text().splitlines()]
    assert [(line["msg"], line.get("order_id")) for line in lines] == [
        ("traced after install", "42"), ("an ordinary line", None)]
