"""roles/rabbitmq's fix for the node hung in "Starting broker..." after a
partition (docs/operations.md, Failover): 3.10.10's rabbit_node_monitor
compiles against the installed 3.10.8's headers, exports what 3.10.8's does,
sends global the nodedown/nodeup messages Erlang >= 25.1 reads (with the
connection id), and the node's environment (RABBITMQ_SERVER_CODE_PATH,
ERL_AFLAGS) loads it before the boot puts the installed one in front."""
import os
import subprocess
from pathlib import Path

import pytest

from services.common.config import REPO_ROOT

RELEASE = Path("/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/plugins")
SOURCE = REPO_ROOT / "ansible" / "roles" / "rabbitmq" / "files" / "rabbit_node_monitor.erl"

pytestmark = pytest.mark.skipif(not (RELEASE / "rabbit-3.10.8").exists(),
                                reason="RabbitMQ 3.10.8 (the release the fix is for) not installed")


def erl(*code_path: Path, expression: str, env: dict | None = None) -> str:
    paths = [arg for path in code_path for arg in ("-pa", str(path))]
    result = subprocess.run(["erl", "-noshell", *paths, "-eval", f"{expression}, halt()."],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_fixed_module_compiles_replaces_the_installed_one_and_speaks_erlang_25(tmp_path):
    # The role's erlc command (roles/rabbitmq/tasks/main.yml).
    subprocess.run(["erlc", "-I", RELEASE / "rabbit_common-3.10.8" / "include",
                    "-I", RELEASE / "rabbit-3.10.8" / "include",
                    "-pa", RELEASE / "rabbit_common-3.10.8" / "ebin", "-o", tmp_path, SOURCE],
                   check=True, timeout=120)
    installed = RELEASE / "rabbit-3.10.8" / "ebin"
    exports = ("{ok, {_, [{exports, E}]}} = beam_lib:chunks(\"%s\", [exports]), "
               "io:format(\"~w~n\", [lists:sort(E)])")
    assert erl(expression=exports % (tmp_path / "rabbit_node_monitor.beam")) \
        == erl(expression=exports % (installed / "rabbit_node_monitor.beam"))
    # As the role starts a node: `-pa $RABBITMQ_SERVER_CODE_PATH`, the module
    # loaded by ERL_AFLAGS; then the boot puts rabbit's ebin in front.
    which = erl(tmp_path, expression=f'code:add_patha("{installed}"), '
                'io:format("~s~n", [code:which(rabbit_node_monitor)])',
                env={"ERL_LIBS": str(RELEASE), "ERL_AFLAGS": "-s rabbit_node_monitor module_info"})
    assert which.strip() == str(tmp_path / "rabbit_node_monitor.beam")
    # Erlang >= 25.1's global reads {nodedown, Node, #{connection_id => Id}}.
    text = SOURCE.read_text()
    assert "{{nodedown, Node, Cid}," in text and "connection_id(ThisState, PeerNode)" in text
