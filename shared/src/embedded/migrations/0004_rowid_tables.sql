-- Schema version 4: the tables whose rows carry a whole document (the documents, their
-- versions' snapshots and the audit trail's entries) become ordinary rowid tables, their
-- key a unique index beside them. As WITHOUT ROWID tables, each row lived in the key's
-- own b-tree, so every lookup or insert that compared against a row spilling onto
-- overflow pages first read that whole row into a fresh buffer: SQLite advises WITHOUT
-- ROWID only for rows smaller than about a twentieth of a page. The rows are copied as
-- they are; nothing else changes.
CREATE TABLE documents_by_rowid (
    id      TEXT NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL,
    doc     TEXT NOT NULL
);
INSERT INTO documents_by_rowid (id, version, doc) SELECT id, version, doc FROM documents;
DROP TABLE documents;
ALTER TABLE documents_by_rowid RENAME TO documents;

CREATE TABLE document_versions_by_rowid (
    document_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    at          TEXT NOT NULL,
    title       TEXT NOT NULL,
    ops         TEXT,
    snapshot    TEXT,
    PRIMARY KEY (document_id, version)
);
INSERT INTO document_versions_by_rowid (document_id, version, actor, at, title, ops, snapshot)
    SELECT document_id, version, actor, at, title, ops, snapshot FROM document_versions;
DROP TABLE document_versions;
ALTER TABLE document_versions_by_rowid RENAME TO document_versions;

CREATE TABLE audit_log_by_rowid (
    document_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    entry       TEXT NOT NULL,
    PRIMARY KEY (document_id, version)
);
INSERT INTO audit_log_by_rowid (document_id, version, entry)
    SELECT document_id, version, entry FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_by_rowid RENAME TO audit_log;
