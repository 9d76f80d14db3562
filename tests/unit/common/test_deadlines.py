"""The deadline read from a call's context data (services.common.deadlines)."""
import pytest

from services.common.deadlines import DEFAULT_BUDGET_MS, deadline_of, refuse_if_expired
from services.common.errors import RequestExpired


def test_the_callers_deadline_is_kept():
    assert deadline_of({"deadline_ms": 1_700_000_005_000}, 1_700_000_000_000) == 1_700_000_005_000


@pytest.mark.parametrize("value", [None, "1700000005000", 1.7e12, True, -5, 10 ** 30, [1]])
def test_a_missing_or_malformed_deadline_gets_the_default_budget(value):
    assert deadline_of({"deadline_ms": value}, 1_000) == 1_000 + DEFAULT_BUDGET_MS


def test_work_past_its_deadline_is_refused_with_request_expired():
    refuse_if_expired(1_001, 1_000)
    with pytest.raises(RequestExpired) as raised:
        refuse_if_expired(1_000, 1_000)
    assert (raised.value.code, raised.value.field) == ("REQUEST_EXPIRED", "deadline_ms")
