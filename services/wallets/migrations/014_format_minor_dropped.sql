-- wallets.format_minor (a second formatter of amounts, beside Python's
-- amounts.format_amount) has no caller left: move_funds writes an amount as
-- round(amount, scale), PostgreSQL's own exact rendering.
DROP FUNCTION IF EXISTS wallets.format_minor(numeric, int);
