-- Outbox payloads above about 2 kB (an engine batch's events, an acceptance
-- batch's engine commands: most rows under load) are compressed when stored
-- and decompressed when the relay reads them. lz4 does both for a fraction
-- of the CPU of PostgreSQL's default pglz, whose compression alone was 0.6 %
-- of the machine in the order-path bench's closed loop (bench/README.md,
-- session 20). Rows stored before keep pglz; both read back alike.
ALTER TABLE public.outbox ALTER COLUMN payload SET COMPRESSION lz4;
