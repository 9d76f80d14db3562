"""ansible/library/exchange_haproxy_server.py against a real HAProxy (Debian's,
as the edge host runs it): drain, back to ready with a wait for the checks,
a second call changes nothing, an unknown server is one line."""
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from services.common.config import REPO_ROOT
from tests.integration.zones import zone_kit as kit

MODULE = REPO_ROOT / "ansible" / "library" / "exchange_haproxy_server.py"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
FRONT_PORT = 18471  # not ports of config/defaults.env

pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY), reason="haproxy not installed")


@pytest.fixture
def edge(tmp_path):
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", kit.free_port()), http.server.BaseHTTPRequestHandler)
    backend.RequestHandlerClass.do_GET = lambda self: (self.send_response(200), self.end_headers())
    backend.RequestHandlerClass.log_message = lambda *args: None
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    sock = tmp_path / "admin.sock"
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"""
global
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout check 2s
frontend gateways
    bind 127.0.0.1:{FRONT_PORT}
    default_backend gateways
backend gateways
    option httpchk GET /health
    default-server inter 500ms fall 2 rise 2
    server zone-a 127.0.0.1:{backend.server_address[1]} check
""")
    process = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):  # bounded
        if sock.exists():
            break
        time.sleep(0.1)
    yield sock
    process.terminate()
    process.wait(timeout=30)
    backend.shutdown()


def run(tmp_path, **args) -> dict:
    arguments = tmp_path / "args.json"
    arguments.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    result = subprocess.run([sys.executable, str(MODULE), str(arguments)], capture_output=True,
                            text=True, timeout=120)
    return json.loads(result.stdout)


def test_drain_then_ready_and_a_second_call_changes_nothing(edge, tmp_path):
    common = {"socket": str(edge), "backend": "gateways", "server": "zone-a"}
    assert run(tmp_path, **common, state="ready", wait_up=20)["status"].startswith("UP")
    drained = run(tmp_path, **common, state="drain")
    assert drained["changed"] and drained["status"] == "DRAIN"
    assert not run(tmp_path, **common, state="drain")["changed"]
    back = run(tmp_path, **common, state="ready", wait_up=20)
    assert back["changed"] and back["status"].startswith("UP")
    assert not run(tmp_path, **common, state="ready")["changed"]


def test_an_unknown_server_fails_with_one_line(edge, tmp_path):
    result = run(tmp_path, socket=str(edge), backend="gateways", server="zone-x", state="drain")
    assert result["failed"] and "no server zone-x in backend gateways" in result["msg"]
