-- The audit's checkpoint (services/wallets/audit.py): the periodic audit
-- verifies only the journal transactions after it, and adds what the
-- journal up to it sums to, kept here, to what follows.
--
-- through_id: every journal transaction with an id up to it is final (no
-- transaction that could still commit holds a lower id) and passed the
-- per-transaction checks. candidate_id / candidate_vxids: the next
-- through_id, and the transactions that were writing the journal when it
-- was read; once none of them runs, no id up to it can still appear.
CREATE TABLE wallets.audit_checkpoint (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    through_id bigint NOT NULL,
    candidate_id bigint,
    candidate_vxids text[],
    advanced_at timestamptz NOT NULL DEFAULT now()
);

-- Per account: its postings of the journal up to through_id, per bucket.
CREATE TABLE wallets.audit_checkpoint_accounts (
    account_id bigint PRIMARY KEY,
    asset text NOT NULL,
    available numeric(78, 0) NOT NULL,
    locked numeric(78, 0) NOT NULL
);

-- Per (user, asset): what the journal up to through_id holds for orders
-- (audit.py, hold_without_order).
CREATE TABLE wallets.audit_checkpoint_order_holds (
    owner text NOT NULL,
    asset text NOT NULL,
    held numeric(78, 0) NOT NULL,
    PRIMARY KEY (owner, asset)
);

-- The postings after a checkpoint, found without reading the whole journal:
-- postings are appended in about transaction order, so a block range index
-- is a few pages, and costs an insert next to nothing.
CREATE INDEX postings_transaction_id_brin ON wallets.postings USING brin (transaction_id)
    WITH (pages_per_range = 32, autosummarize = on);
