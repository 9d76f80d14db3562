"""The registry CLI's commands map to the registry's RPC verbs (no servers)."""
import pytest

from services.registry import cli


@pytest.mark.parametrize("argv, verb, params", [
    (["halt", "SOL-USDT"], "halt_market", ("SOL-USDT",)),
    (["resume", "SOL-USDT"], "resume_market", ("SOL-USDT",)),
    (["announce", "SOL-USDT"], "announce", ("SOL-USDT",)),
    (["announce", "SOL"], "announce", ("SOL",)),
    (["update-market", "SOL-USDT", "--status", "halted"], "update_market",
     ("SOL-USDT", {"status": "halted"})),
])
def test_each_command_calls_its_verb(argv, verb, params):
    assert cli.request(cli._parser().parse_args([*argv, "--admin", "ops"])) == (verb, params)


def test_halt_needs_a_symbol():
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["halt", "--admin", "ops"])
