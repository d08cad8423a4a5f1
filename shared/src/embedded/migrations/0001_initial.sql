-- Schema version 1: the tables as docfan made them before schema versions were
-- numbered (commit 47fbc70), statement for statement. Every statement is idempotent,
-- so a data directory made then (user_version 0, every table already there) upgrades
-- to version 1 without a change to its rows.

-- The change log (the embedded twin of the table's DynamoDB stream) and the stream
-- poller's checkpoints.
CREATE TABLE IF NOT EXISTS change_log (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id     TEXT NOT NULL,
    record          TEXT NOT NULL,
    committed_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_checkpoints (
    partition INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL
);

-- Documents, who may read them, and every version.
CREATE TABLE IF NOT EXISTS documents (
    id      TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    doc     TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS document_members (
    user_id     TEXT NOT NULL,
    document_id TEXT NOT NULL,
    PRIMARY KEY (user_id, document_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS document_members_by_document ON document_members (document_id);
CREATE TABLE IF NOT EXISTS document_versions (
    document_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    at          TEXT NOT NULL,
    title       TEXT NOT NULL,
    ops         TEXT,
    snapshot    TEXT,
    PRIMARY KEY (document_id, version)
) WITHOUT ROWID;
-- Documents stored before versions were kept start their history at their current
-- version, with a snapshot.
INSERT INTO document_versions (document_id, version, actor, at, title, ops, snapshot)
    SELECT id, version, json_extract(doc, '$.updatedBy'), json_extract(doc, '$.updatedAt'),
           json_extract(doc, '$.title'), NULL, json_extract(doc, '$.body')
    FROM documents
    WHERE NOT EXISTS (SELECT 1 FROM document_versions v WHERE v.document_id = documents.id);

-- The audit trail: one entry per (document, version).
CREATE TABLE IF NOT EXISTS audit_log (
    document_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    entry       TEXT NOT NULL,
    PRIMARY KEY (document_id, version)
) WITHOUT ROWID;

-- The analysis queue: every (document, version) ever enqueued, and the waiting jobs.
CREATE TABLE IF NOT EXISTS analysis_job_keys (
    document_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (document_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS analysis_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id   TEXT NOT NULL,
    version       INTEGER NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX IF NOT EXISTS analysis_jobs_by_visibility ON analysis_jobs (visible_at_ms, id);
CREATE INDEX IF NOT EXISTS analysis_jobs_by_receipt ON analysis_jobs (receipt);

-- Dead letters of the stream handler and the analysis worker.
CREATE TABLE IF NOT EXISTS dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT NOT NULL,
    payload      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    failed_at_ms INTEGER NOT NULL
);

-- The latest analysis of each document.
CREATE TABLE IF NOT EXISTS analyses (
    document_id TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    analysis    TEXT NOT NULL
) WITHOUT ROWID;
