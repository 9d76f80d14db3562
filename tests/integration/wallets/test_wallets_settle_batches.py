"""settle_batches on the real PostgreSQL: the pipelined settler (batch N+1 built
while batch N commits) settles each batch as settle_trades would, in order, and
never posts a batch after one that was refused -- unless a ``refused`` callback
decides that batch first."""
import uuid

import pytest

from services.wallets import schemas
from services.wallets.assets import ASSETS
from services.wallets.errors import InsufficientLocked, UnknownUser

BTC, USDT = ASSETS["BTC"], ASSETS["USDT"]


def trade(maker, taker, quantity="0.01", trade_id=None):
    return {"trade_id": trade_id or f"sb-{uuid.uuid4().hex}", "market": "BTC-USDT",
            "price": "30000", "quantity": quantity, "taker_side": "buy", "maker_user_id": maker,
            "taker_user_id": taker}


@pytest.fixture
def traders(ledger, new_user, fund):
    """A seller with 1 BTC locked and a buyer with 100,000 USDT locked."""
    seller, buyer = new_user("sb-seller"), new_user("sb-buyer")
    fund(seller, "BTC", 10 ** 8)
    ledger.hold(seller, BTC, 10 ** 8, f"sell:{seller}")
    fund(buyer, "USDT", 100_000 * 10 ** 6)
    ledger.hold(buyer, USDT, 100_000 * 10 ** 6, f"buy:{buyer}")
    return seller, buyer


def stored_keys(db, batch):
    return db.execute("SELECT count(*) FROM wallets.transactions WHERE idempotency_key = ANY(%s)",
                      ([t.key for t in batch],)).fetchone()[0]


def test_batches_settle_in_order_as_settle_trades_would(ledger, traders, footprint):
    seller, buyer = traders
    batches = [schemas.load_trades([trade(seller, buyer) for _ in range(7)]) for _ in range(4)]
    results = ledger.settle_batches(batches)
    assert [[r["trade_id"] for r in batch] for batch in results] == \
        [[t.trade_id for t in batch] for batch in batches]
    assert ledger.balance(seller, BTC)["locked"] == "0.72000000"  # 28 x 0.01 BTC sold
    assert ledger.balance(buyer, BTC)["available"] == "0.27944000"  # less the 0.2 % taker fee
    transaction_ids = [r["transaction_id"] for batch in results for r in batch]
    assert transaction_ids == sorted(transaction_ids)  # committed one batch after the other
    # replayed, through either verb: the original results, nothing written
    before = footprint(seller), footprint(buyer)
    assert ledger.settle_batches(batches) == results
    assert [ledger.settle_trades(batch) for batch in batches] == results
    assert (footprint(seller), footprint(buyer)) == before


def test_a_trade_of_the_batch_in_flight_is_a_replay_in_the_next(ledger, traders):
    """Batch 2 is built while batch 1 commits and repeats one of its trades:
    that trade is settled once, and batch 2 returns batch 1's result for it."""
    seller, buyer = traders
    first = [trade(seller, buyer) for _ in range(5)]
    batches = [schemas.load_trades(first), schemas.load_trades([first[2], trade(seller, buyer)])]
    one, two = ledger.settle_batches(batches)
    assert two[0] == one[2]
    assert ledger.balance(seller, BTC)["locked"] == "0.94000000"  # six trades, not seven


def test_a_refused_batch_stops_the_stream_and_writes_nothing(ledger, traders, new_user, footprint,
                                                             db):
    seller, buyer = traders
    broke = new_user("sb-broke")  # has no BTC locked
    ok = schemas.load_trades([trade(seller, buyer) for _ in range(3)])
    short = schemas.load_trades([trade(seller, buyer), trade(broke, buyer)])
    later = schemas.load_trades([trade(seller, buyer) for _ in range(3)])
    broke_before = footprint(broke)
    with pytest.raises(InsufficientLocked) as raised:
        ledger.settle_batches([ok, short, later])
    assert short[1].key in str(raised.value)
    assert (stored_keys(db, ok), stored_keys(db, short), stored_keys(db, later)) == (3, 0, 0)
    assert footprint(broke) == broke_before
    # an unknown user refuses its batch in order too: the batch before it commits
    ghost = schemas.load_trades([trade(seller, f"ghost-{uuid.uuid4()}")])
    with pytest.raises(UnknownUser):
        ledger.settle_batches([later, ghost, ok])
    assert stored_keys(db, later) == 3


def test_refused_decides_a_batch_before_the_next_is_posted(ledger, traders, new_user, db):
    seller, buyer = traders
    broke = new_user("sb-broke")
    batches = [schemas.load_trades([trade(seller, buyer)]),
               schemas.load_trades([trade(seller, buyer), trade(broke, buyer)]),
               schemas.load_trades([trade(seller, buyer)])]
    seen = []

    def refused(batch, error):
        seen.append((batch, type(error), stored_keys(db, batches[2])))
        return ledger.settle_trades(batch[:1])  # what the settlement consumer does: settle what it can

    results = ledger.settle_batches(batches, refused=refused)
    assert seen == [(batches[1], InsufficientLocked, 0)]
    assert [len(r) for r in results] == [1, 1, 1]
    assert [stored_keys(db, b) for b in batches] == [1, 1, 1]
    assert results[1][0]["trade_id"] == batches[1][0].trade_id
