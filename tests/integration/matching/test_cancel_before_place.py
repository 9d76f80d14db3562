"""A cancel (or an amend) delivered before its order's place is applied again
when it comes again.

Orders' outbox relay publishes a batch of command messages and, on a nack,
publishes again from the first unconfirmed one. If the place of order X is
nacked and the cancel of X behind it is confirmed, the engine sees the cancel
first (refused: UNKNOWN_ORDER), then the place and the cancel again. The host
deduplicates by command id: it skipped the second cancel as journaled, and the
order the user cancelled rested on the book (orders ignores a refused cancel).
Now a cancel or an amend refused because its order is not on the book is
journaled under an id no copy matches (models.refused_until_placed), so the
copy is applied. On the real database, hosts driven directly, as
test_rebuild_starting_state does."""
import uuid

import psycopg
import pytest

from services.common import catalogue
from services.matching.models import (
    AmendOrder,
    CancelOrder,
    MarketConfig,
    PlaceOrder,
    command_to_dict,
)
from services.matching.providers import MarketHost
from tests.integration.registry_kit import throwaway_market


def commands(*pairs):
    return [(command_id, {"command": command_to_dict(command)}) for command_id, command in pairs]


@pytest.fixture
def host(pool, test_settings, nameko_config):
    """A fresh market's active host; its events go to an exchange of its own
    (outbox rows deleted after)."""
    exchange = f"cancel_first_test_{uuid.uuid4().hex[:8]}.events"
    with throwaway_market(test_settings, lot="0.001") as symbol:
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            config = MarketConfig.from_dict(catalogue.load(conn).market(symbol).engine_config())
        host = MarketHost(config, pool, nameko_config["AMQP_URI"], events_exchange=exchange)
        host.rebuild()
        try:
            yield host
        finally:
            with psycopg.connect(test_settings.postgres_dsn()) as conn:
                conn.execute("DELETE FROM outbox WHERE exchange = %s", (exchange,))


def replayed(host):
    """A second host of the same market rebuilt from the journal alone."""
    other = MarketHost(host.config, host.pool, host.amqp_uri, events_exchange=host.events_exchange)
    other.rebuild()
    return other


def journal_ids(host):
    with host.pool.connection() as conn:
        return [row[0] for row in conn.execute(
            "SELECT command_id FROM matching_journal WHERE market = %s ORDER BY seq",
            (host.market,))]


PLACE = ("place:1", PlaceOrder(1, "alice", "buy", price=10_000, quantity=1_000))
CANCEL = ("cancel:1:c", CancelOrder(1, "alice"))


def test_a_cancel_confirmed_before_its_nacked_place_cancels_the_order(host):
    # First publication: the place nacked, the cancel confirmed.
    assert host.process(commands(CANCEL)) == 1
    # The relay publishes again from the place; the engine takes them in one
    # delivery or in two.
    host.process(commands(PLACE, CANCEL))
    assert host.engine.book.open_orders("alice") == []
    assert host.engine.order(1) is None
    ids = journal_ids(host)
    assert ids == ["cancel:1:c#1", "place:1", "cancel:1:c"]
    # A redelivery of the applied cancel is a duplicate; the book replays the same.
    assert host.process(commands(CANCEL)) == 0
    assert replayed(host).engine.snapshot() == host.engine.snapshot()


def test_the_copy_applies_in_a_later_delivery_too(host):
    host.process(commands(CANCEL))
    host.process(commands(PLACE))
    host.process(commands(CANCEL))
    assert host.engine.order(1) is None
    assert replayed(host).engine.snapshot() == host.engine.snapshot()


def test_copies_within_one_delivery_apply_in_order(host):
    host.process(commands(CANCEL, PLACE, CANCEL))
    assert host.engine.order(1) is None
    assert journal_ids(host) == ["cancel:1:c#1", "place:1", "cancel:1:c"]


def test_an_amend_confirmed_before_its_nacked_place_amends_the_order(host):
    amend = ("amend:1:a", AmendOrder(1, "alice", price=9_990, quantity=None))
    host.process(commands(amend))
    host.process(commands(PLACE, amend))
    assert host.engine.order(1)["price"] == 9_990
    assert replayed(host).engine.snapshot() == host.engine.snapshot()


def test_a_cancel_refused_for_another_reason_stays_a_duplicate(host):
    """Only the not-on-the-book refusal is retried: a cancel that cancelled is
    skipped when it comes again, and so is its order's place."""
    host.process(commands(PLACE, CANCEL))
    host.process(commands(PLACE, CANCEL))
    assert journal_ids(host) == ["place:1", "cancel:1:c"]
