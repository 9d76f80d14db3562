"""The database refuses to lose or invent money by itself, and the audit finds
it when someone gets around the guards (simulated inside a transaction that
is rolled back, so the shared test database stays clean)."""
import time

import psycopg
import pytest
from psycopg import errors as pg_errors

from services.common.postgres import refusal_of
from services.wallets.assets import ASSETS
from services.wallets.audit import run_audit, run_checkpointed_audit

ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


@pytest.fixture
def funded_account(ledger, new_user, fund, db):
    user = new_user()
    fund(user, "BTC", 10 ** 8)
    account_id = db.execute("SELECT id FROM wallets.accounts WHERE owner = %s AND asset = 'BTC'",
                            (user,)).fetchone()[0]
    fee_id = db.execute("SELECT id FROM wallets.accounts WHERE owner = 'system:fee_revenue' "
                        "AND asset = 'BTC'").fetchone()[0]
    return user, account_id, fee_id


@pytest.fixture
def scratch(wallets_schema):
    """A connection whose every change is rolled back."""
    with psycopg.connect(wallets_schema) as conn:
        yield conn
        conn.rollback()


def journal(conn, key="guard-test", type_="adjustment"):
    return conn.execute("INSERT INTO wallets.transactions (idempotency_key, type) "
                        "VALUES (%s, %s) RETURNING id", (key, type_)).fetchone()[0]


def refused(conn, statement, params=(), error=psycopg.Error):
    conn.execute("SAVEPOINT attempt")
    with pytest.raises(error) as raised:
        conn.execute(statement, params)
    conn.execute("ROLLBACK TO SAVEPOINT attempt")
    return raised.value


def test_the_database_refuses_every_way_around_the_journal(funded_account, scratch):
    user, account_id, fee_id = funded_account
    tx = journal(scratch)
    post = "INSERT INTO wallets.postings (account_id, transaction_id, bucket, asset, amount) VALUES "
    refused(scratch, "UPDATE wallets.accounts SET available = available + 1 WHERE id = %s", (account_id,),
            pg_errors.IntegrityConstraintViolation)
    refused(scratch, "INSERT INTO wallets.accounts (owner, kind, asset, available) "
                     "VALUES ('rich', 'user', 'BTC', 100)", (), pg_errors.IntegrityConstraintViolation)
    for owner, kind, asset, rule in (
            ("x", "bank", "BTC", "accounts_kind_valid"),
            ("system:fee_revenue", "user", "BTC", "accounts_system_owner"),
            ("system:deposits_clearing", "fee_revenue", "BTC", "accounts_system_owner"),
            ("x", "user", "btc", "accounts_asset_code")):
        assert refused(scratch, "INSERT INTO wallets.accounts (owner, kind, asset) VALUES (%s, %s, %s)",
                       (owner, kind, asset), pg_errors.CheckViolation).diag.constraint_name == rule
    refused(scratch, "UPDATE wallets.accounts SET owner = 'someone-else' WHERE id = %s", (account_id,),
            pg_errors.IntegrityConstraintViolation)
    assert refused(scratch, post + "(%s, %s, 'available', 'BTC', 5)", (account_id, tx),
                   pg_errors.CheckViolation).diag.constraint_name == "postings_balance_per_asset"
    assert refused(scratch, post + "(%s, %s, 'available', 'BTC', -200000000), (%s, %s, 'available', 'BTC', 200000000)",
                   (account_id, tx, fee_id, tx),
                   pg_errors.CheckViolation).diag.constraint_name == "accounts_available_nonnegative"
    assert refused(scratch, post + "(%s, %s, 'available', 'ETH', -5), (%s, %s, 'available', 'ETH', 5)",
                   (account_id, tx, fee_id, tx),
                   pg_errors.ForeignKeyViolation).diag.constraint_name == "postings_account_exists"
    assert refused(scratch, post + "(%s, %s, 'available', 'BTC', -5), (%s, %s, 'available', 'BTC', 5)",
                   (account_id, 2 ** 62, fee_id, 2 ** 62),
                   pg_errors.ForeignKeyViolation).diag.constraint_name == "postings_transaction_exists"
    refused(scratch, "DELETE FROM wallets.postings WHERE account_id = %s", (account_id,),
            pg_errors.IntegrityConstraintViolation)
    refused(scratch, "UPDATE wallets.transactions SET type = 'fee' WHERE id = %s", (tx,),
            pg_errors.IntegrityConstraintViolation)
    refused(scratch, "TRUNCATE wallets.postings", (), pg_errors.IntegrityConstraintViolation)
    refused(scratch, "DELETE FROM wallets.accounts WHERE id = %s", (account_id,),
            pg_errors.IntegrityConstraintViolation)
    # a balanced posting through the journal is the one way that works
    scratch.execute(post + "(%s, %s, 'available', 'BTC', -5), (%s, %s, 'available', 'BTC', 5)",
                    (account_id, tx, fee_id, tx))
    assert run_audit(scratch) == []


def test_the_database_enforces_the_withdrawal_state_machine(ledger, funded_account, scratch):
    user, _, _ = funded_account
    withdrawal = ledger.request_withdrawal(user, ASSETS["BTC"], ADDRESS, 10 ** 7, "guard")
    illegal = refused(scratch, "UPDATE wallets.withdrawals SET status = 'sent', txid = 'x' "
                               "WHERE id = %s", (withdrawal["withdrawal_id"],))
    assert refusal_of(illegal)[0] == "ILLEGAL_WITHDRAWAL_TRANSITION"  # a coded refusal
    refused(scratch, "UPDATE wallets.withdrawals SET amount = 1 WHERE id = %s",
            (withdrawal["withdrawal_id"],), pg_errors.IntegrityConstraintViolation)
    ledger.change_withdrawal(withdrawal["withdrawal_id"], "cancel", user, owner=user)


def test_the_audit_finds_money_invented_behind_the_journals_back(funded_account, scratch):
    user, account_id, _ = funded_account
    assert run_audit(scratch) == []
    scratch.execute("ALTER TABLE wallets.accounts DISABLE TRIGGER accounts_balances_via_postings")
    scratch.execute("UPDATE wallets.accounts SET available = available + 7 WHERE id = %s", (account_id,))
    checks = {finding["check"] for finding in run_audit(scratch)}
    assert checks == {"balance_differs_from_postings", "equation_does_not_hold"}


def test_the_audit_finds_an_unbalanced_transaction(funded_account, scratch):
    _, account_id, fee_id = funded_account
    scratch.execute("ALTER TABLE wallets.postings DISABLE TRIGGER postings_apply")
    tx = journal(scratch, "audit-unbalanced", "hold")  # and a hold must not touch fee revenue
    scratch.execute("INSERT INTO wallets.postings (account_id, transaction_id, bucket, asset, amount) "
                    "VALUES (%s, %s, 'available', 'BTC', 3)", (fee_id, tx))
    checks = {finding["check"] for finding in run_audit(scratch)}
    assert {"unbalanced_transaction", "transaction_without_postings", "asset_does_not_balance",
            "balance_differs_from_postings", "system_account_misuse"} <= checks


def test_the_audit_finds_negative_balances_and_open_withdrawals_without_funds(ledger, funded_account, scratch):
    user, account_id, _ = funded_account
    ledger.request_withdrawal(user, ASSETS["BTC"], ADDRESS, 10 ** 7, "audit")
    scratch.execute("ALTER TABLE wallets.accounts DISABLE TRIGGER accounts_balances_via_postings")
    scratch.execute("ALTER TABLE wallets.accounts DROP CONSTRAINT accounts_locked_nonnegative")
    scratch.execute("UPDATE wallets.accounts SET locked = -1 WHERE id = %s", (account_id,))
    checks = {finding["check"] for finding in run_audit(scratch)}
    assert {"negative_balance", "open_withdrawals_exceed_locked"} <= checks
    scratch.rollback()
    withdrawal_id = ledger.withdrawals(user, 1)[0]["withdrawal_id"]
    ledger.change_withdrawal(withdrawal_id, "cancel", user, owner=user)


def test_the_audit_finds_postings_on_missing_transactions_or_in_the_wrong_asset(funded_account, scratch):
    _, account_id, fee_id = funded_account
    scratch.execute("ALTER TABLE wallets.postings DISABLE TRIGGER postings_apply")
    tx = journal(scratch, "audit-wrong-asset")
    scratch.execute("INSERT INTO wallets.postings (account_id, transaction_id, bucket, asset, amount) VALUES "
                    "(%s, %s, 'available', 'ETH', -4), (%s, %s, 'available', 'ETH', 4)",
                    (account_id, tx, fee_id, tx))
    scratch.execute("INSERT INTO wallets.postings (account_id, transaction_id, bucket, asset, amount) VALUES "
                    "(%s, %s, 'available', 'BTC', -4), (%s, %s, 'available', 'BTC', 4)",
                    (account_id, 2 ** 62, fee_id, 2 ** 62))
    checks = {finding["check"] for finding in run_audit(scratch)}
    assert {"posting_asset_mismatch", "posting_without_transaction",
            "balance_differs_from_postings"} <= checks


def checkpoint_past(ledger, db, transaction_id):
    """The audit checkpoint once it covers ``transaction_id``: clean periodic
    audits take a candidate, then move to it once nothing writing the journal
    below it still runs (other runs share the test database: bounded wait)."""
    deadline = time.monotonic() + 60
    for _ in range(600):
        ledger.audit_since_checkpoint()
        row = db.execute("SELECT through_id FROM wallets.audit_checkpoint").fetchone()
        if row is not None and row[0] >= transaction_id:
            return row[0]
        assert time.monotonic() < deadline, "the audit checkpoint did not move past the test's entries"
        time.sleep(0.1)
    raise AssertionError("the audit checkpoint did not move past the test's entries")


def test_the_checkpointed_audit_reports_what_goes_wrong_after_its_checkpoint(ledger, funded_account, db,
                                                                            scratch):
    user, account_id, fee_id = funded_account
    funded = db.execute("SELECT max(transaction_id) FROM wallets.postings WHERE account_id = %s",
                        (account_id,)).fetchone()[0]
    through = checkpoint_past(ledger, db, funded)
    # what the checkpoint stands for: the funding is summed in it, not re-read
    assert db.execute("SELECT available FROM wallets.audit_checkpoint_accounts WHERE account_id = %s",
                      (account_id,)).fetchone()[0] == 10 ** 8
    assert run_checkpointed_audit(scratch, None) == []

    # money invented behind the journal's back, on an account checkpointed long ago
    scratch.execute("ALTER TABLE wallets.accounts DISABLE TRIGGER accounts_balances_via_postings")
    scratch.execute("UPDATE wallets.accounts SET available = available + 7 WHERE id = %s", (account_id,))
    checks = {finding["check"] for finding in run_checkpointed_audit(scratch, None)}
    assert checks == {"balance_differs_from_postings", "equation_does_not_hold"}
    scratch.rollback()

    # an unbalanced journal entry after the checkpoint (a hold that touches fee revenue)
    scratch.execute("ALTER TABLE wallets.postings DISABLE TRIGGER postings_apply")
    tx = journal(scratch, "audit-after-checkpoint", "hold")
    assert tx > through
    scratch.execute("INSERT INTO wallets.postings (account_id, transaction_id, bucket, asset, amount) "
                    "VALUES (%s, %s, 'available', 'BTC', 3)", (fee_id, tx))
    checks = {finding["check"] for finding in run_checkpointed_audit(scratch, None)}
    assert {"unbalanced_transaction", "transaction_without_postings", "asset_does_not_balance",
            "balance_differs_from_postings", "system_account_misuse"} <= checks
    # a run with findings of the journal's own does not move the checkpoint
    assert scratch.execute("SELECT through_id FROM wallets.audit_checkpoint").fetchone()[0] == through
    scratch.rollback()


def test_a_checkpoint_taken_on_an_empty_journal_moves_on(funded_account, scratch):
    """A first audit while the journal was empty leaves a checkpoint without
    a candidate (max(id) NULL). The next audit must take one, not fail: it
    raised TypeError (None > int) at its end, so every periodic audit after
    it read the whole journal and failed again (found in the order path
    bench's namespace, 4.57 M transactions behind)."""
    scratch.execute("UPDATE wallets.audit_checkpoint SET candidate_id = NULL, "
                    "candidate_vxids = '{}'")
    if scratch.execute("SELECT count(*) FROM wallets.audit_checkpoint").fetchone()[0] == 0:
        scratch.execute("INSERT INTO wallets.audit_checkpoint (through_id, candidate_id, "
                        "candidate_vxids) VALUES (-9223372036854775808, NULL, '{}')")
    assert run_checkpointed_audit(scratch, None) == []
    candidate = scratch.execute("SELECT candidate_id FROM wallets.audit_checkpoint").fetchone()[0]
    assert candidate is not None and candidate > 0
    scratch.rollback()


def test_the_full_audit_finds_a_checkpointed_entry_changed_in_place(ledger, funded_account, db, scratch):
    """What a checkpoint cannot see -- an entry up to it changed in place,
    only possible with the journal's guards off -- the full audit (the audit
    RPC) finds."""
    _, account_id, _ = funded_account
    funded = db.execute("SELECT max(transaction_id) FROM wallets.postings WHERE account_id = %s",
                        (account_id,)).fetchone()[0]
    checkpoint_past(ledger, db, funded)
    scratch.execute("ALTER TABLE wallets.postings DISABLE TRIGGER postings_append_only")
    scratch.execute("UPDATE wallets.postings SET amount = amount + 1 WHERE account_id = %s "
                    "AND transaction_id = %s AND bucket = 'available'", (account_id, funded))
    checks = {finding["check"] for finding in run_audit(scratch)}
    assert {"unbalanced_transaction", "balance_differs_from_postings"} <= checks


def test_a_posting_is_written_into_one_index_only(db):
    """A settled trade writes about six postings, and every index on
    wallets.postings is paid for at each of them: a BRIN index on
    transaction_id (for the periodic audit) cost the settler ~12 buffer
    accesses per trade, its whole extra PostgreSQL CPU against the tree
    before it. The periodic audit finds the postings after its checkpoint
    through the primary key (migration 017, audit._POSTINGS_BY_ACCOUNT)."""
    indexes = db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'wallets' "
                         "AND tablename = 'postings' ORDER BY 1").fetchall()
    assert [name for (name,) in indexes] == ["postings_pkey"]


def test_the_periodic_audit_plans_on_what_it_gathered(funded_account, scratch):
    """The postings since the checkpoint go into a temporary table, which
    autovacuum never analyzes: the planner guessed its size and the bucket's
    share from nothing (383 rows for 75 k locked postings on the order path
    bench's database after its set-up, when a holds pass ran for over two
    minutes). The audit analyzes it before its passes read it."""
    assert run_checkpointed_audit(scratch, None) == []  # the deposit is after the checkpoint
    gathered = scratch.execute("SELECT count(*) FROM pg_temp.audit_new_postings").fetchone()[0]
    analyzed = scratch.execute("SELECT reltuples FROM pg_class "
                               "WHERE oid = 'pg_temp.audit_new_postings'::regclass").fetchone()[0]
    assert gathered > 0 and analyzed == gathered
    scratch.rollback()
