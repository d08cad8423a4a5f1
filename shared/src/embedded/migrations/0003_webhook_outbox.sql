-- Schema version 3: the webhook outbox, the embedded event bus. One row per (rule,
-- event): `publish` inserts it, the rule's delivery worker POSTs it, oldest first, and
-- marks it delivered or moves it to the dead letters once its retry budget is spent.
-- Delivered rows stay a while (`delivered_at_ms`) so a change published again (a
-- redelivered record) is recognised and not sent twice; the worker prunes them.
CREATE TABLE webhook_outbox (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    rule                TEXT    NOT NULL,
    event_id            TEXT    NOT NULL,
    document_id         TEXT    NOT NULL,
    body                TEXT    NOT NULL,
    enqueued_at_ms      INTEGER NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    first_attempt_at_ms INTEGER,
    next_attempt_at_ms  INTEGER NOT NULL,
    last_error          TEXT,
    delivered_at_ms     INTEGER,
    UNIQUE (rule, event_id)
);
CREATE INDEX webhook_outbox_waiting ON webhook_outbox (rule, seq)
    WHERE delivered_at_ms IS NULL;
CREATE INDEX webhook_outbox_delivered ON webhook_outbox (delivered_at_ms)
    WHERE delivered_at_ms IS NOT NULL;
