-- Schema version 2: each change-log row says which shard its document hashes to, so a
-- poller partition reads only its own records. `shard` is FNV-1a of the document id
-- modulo 2520 (the least common multiple of 1..=10): modulo any parallelization factor
-- from 1 to 10 it gives that factor's partition. Rows written before this version have
-- none (NULL); the reader hashes those itself until the retention trims them.
ALTER TABLE change_log ADD COLUMN shard INTEGER;
