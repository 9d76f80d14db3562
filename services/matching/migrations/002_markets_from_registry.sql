-- Markets are the registry's (registry.markets, read through
-- registry.catalogue()): matching keeps only its journal and snapshots.
DROP TABLE markets;
