-- The BRIN index on postings.transaction_id (016) cost every posting's
-- insert two more buffer accesses (its metapage and revmap): ~12 per settled
-- trade, the pipelined settler's whole difference in PostgreSQL CPU against
-- the tree before it (bench/README.md, Wallets, session 9). The periodic
-- audit finds the postings after its checkpoint through each account's
-- primary key (account_id, transaction_id, bucket) instead
-- (services/wallets/audit.py, _POSTINGS_BY_ACCOUNT).
DROP INDEX IF EXISTS wallets.postings_transaction_id_brin;
