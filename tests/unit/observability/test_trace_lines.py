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


EACH_SCRIPT = r"""
import json, logging, os, sys
from services.common import consumer, logs

os.environ["EXCHANGE_LOG_DIR"] = sys.argv[1]
logs.install_for_process("unit")
# A consumer's batch: an engine batch of two order events and a command batch
# of one command, handled as the stack's consumers are (consumer.observed).
batch = [
    ("engine_batch.orders", "m-1", {"at": 1, "events": [
        ["order_updated", "e-1", {"order_id": 7, "user_id": "u-7"}],
        ["trade_executed", "e-2", {"trade_id": 3, "maker_order_id": 7, "taker_order_id": 8}]]}),
    ("command_batch", "m-2", {"commands": [{"id": "place:9", "command": {"order_id": 9}}]}),
]
consumer.observed("q", lambda messages: None)(batch)
logging.shutdown()
"""


def test_a_consumers_batch_writes_one_trace_line_per_part_with_its_ids(tmp_path):
    """The parts of a consumer's batch go through logging as one record
    (logs.trace_each) and come out as one JSON line each, as before: the
    line of each order's own step, found by ``make logs ORDER=``."""
    result = subprocess.run([sys.executable, "-c", EACH_SCRIPT, str(tmp_path)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "json" / "unit.jsonl").read_text().splitlines()]
    traced = [(line["msg"], line.get("order_id"), line.get("order_ids"), line.get("trade_id"),
               line.get("user_id")) for line in lines if line["logger"] == "exchange.trace"]
    assert traced == [
        ("q handled engine_batch.orders e-1", "7", None, None, "u-7"),
        ("q handled engine_batch.orders e-2", None, ["7", "8"], "3", None),
        ("q handled command_batch place:9", "9", None, None, None),
    ]
    assert {line["process"] for line in lines} == {"unit"}
