"""zone_kit.retrying_transient, what the drills' audit goes through (no
servers: the calls are plain functions raising what nameko raises). A
failover's AdminShutdown is asked again; a finding is never hidden; any
other error is raised at once; the retries end with every failure named."""
import pytest
from nameko.exceptions import RemoteError

from tests.integration.zones import zone_kit as kit


def answers(*outcomes):
    """A call that raises or returns each outcome in turn, counting calls."""
    calls = []

    def call():
        outcome = outcomes[len(calls)]
        calls.append(outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    return call, calls


def test_a_failovers_transient_errors_are_asked_again_until_the_answer():
    call, calls = answers(RemoteError("AdminShutdown", "terminating connection due to administrator command"),
                          ConnectionRefusedError(111, "Connection refused"),
                          RemoteError("OperationalError", "connection is bad"),
                          [])
    assert kit.retrying_transient(call, attempts=5, pause_s=0) == []
    assert len(calls) == 4


def test_a_finding_is_the_answer_never_retried_away():
    finding = [{"check": "balances", "account": 7}]
    call, calls = answers(RemoteError("AdminShutdown", "x"), finding, [])
    assert kit.retrying_transient(call, attempts=5, pause_s=0) == finding
    assert len(calls) == 2


def test_any_other_error_is_raised_at_once():
    call, calls = answers(RemoteError("InvalidAmount", "coded"), [])
    with pytest.raises(RemoteError, match="InvalidAmount"):
        kit.retrying_transient(call, attempts=5, pause_s=0)
    assert len(calls) == 1


def test_the_retries_are_bounded_and_name_every_failure():
    call, calls = answers(*[RemoteError("AdminShutdown", f"try {n}") for n in range(3)], [])
    with pytest.raises(AssertionError, match=r"after 3 attempts.*try 0.*try 1.*try 2"):
        kit.retrying_transient(call, attempts=3, pause_s=0)
    assert len(calls) == 3
