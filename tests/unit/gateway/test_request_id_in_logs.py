"""Every JSON log line the gateway writes while serving a request names the
request, the traceback of an unexpected failure (a 500) included: before
session 25 only the trace line did, and an operator holding a client's
X-Request-Id could not find the failure's traceback. In a fresh interpreter
(JSON logs install once per process); no server is needed to build the app."""
import json
import subprocess
import sys

from services.common.config import REPO_ROOT

SCRIPT = r"""
import logging, os, sys
os.environ["EXCHANGE_LOG_DIR"] = sys.argv[1]
from services.common import logs
logs.install_for_process("gateway")
from gateway.app import create_app

app = create_app()

@app.get("/api/v1/test-failure")
def failure():
    raise RuntimeError("an unexpected failure")

@app.get("/api/v1/test-warning")
def warning():
    logging.getLogger("gateway").warning("a warning while serving")
    return "{}"

client = app.test_client()
for path, request_id in (("/api/v1/test-failure", "a" * 32), ("/api/v1/test-warning", "b" * 32)):
    assert client.get(path, headers={"X-Request-Id": request_id}).headers["X-Request-Id"] \
        == request_id
logging.getLogger("gateway").warning("outside any request")
logging.shutdown()
"""


def test_the_lines_written_while_serving_a_request_carry_its_id(tmp_path):
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT, str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in
             (tmp_path / "json" / "gateway.jsonl").read_text().splitlines()]
    by_message = {line["msg"]: line for line in lines}
    failure = by_message["unexpected failure serving GET /api/v1/test-failure"]
    assert failure["level"] == "ERROR" and "an unexpected failure" in failure["exc"]
    assert failure.get("request_id") == "a" * 32
    assert by_message["a warning while serving"].get("request_id") == "b" * 32
    # The next request on the same greenthread, or none, does not inherit it.
    assert "request_id" not in by_message["outside any request"]
