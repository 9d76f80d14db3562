-- The matching service's tables in their own schema.
CREATE SCHEMA matching;
ALTER TABLE public.matching_journal SET SCHEMA matching;
ALTER TABLE public.matching_snapshots SET SCHEMA matching;
