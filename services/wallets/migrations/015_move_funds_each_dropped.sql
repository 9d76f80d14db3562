-- wallets.move_funds_each (each movement of a batch through move_funds in a
-- subtransaction of its own) has no caller left: wallets.move_funds_batch
-- decides a whole batch in one pass (functions/move_funds_batch.sql).
DROP FUNCTION IF EXISTS wallets.move_funds_each(text[], text[], text[], numeric[], text[]);
DELETE FROM schema_functions WHERE component = 'wallets' AND name = 'move_funds_each';
