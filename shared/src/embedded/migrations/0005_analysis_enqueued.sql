-- Schema version 5: the analysis queue remembers the newest version it enqueued of each
-- document instead of every (document, version) it ever enqueued. That table gained a
-- row with every change and was never trimmed, and each of its inserts landed at a
-- random place in a growing index. A change no newer than what its document already
-- enqueued is still not enqueued again. A document's job that no worker has taken yet
-- is one row, moved to the newest version as changes come (the index below finds it).
CREATE TABLE analysis_enqueued (
    document_id TEXT PRIMARY KEY,
    version     INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO analysis_enqueued (document_id, version)
    SELECT document_id, MAX(version) FROM analysis_job_keys GROUP BY document_id;
DROP TABLE analysis_job_keys;
CREATE INDEX analysis_jobs_waiting ON analysis_jobs (document_id) WHERE receipt IS NULL;
