-- Outbox schema v2: state documents committed in the same transaction as the alert rows.
-- Run in one transaction by edge.storage.outbox, which then sets PRAGMA user_version = 2.

-- The alert book's open alerts (JSON), written with every alert state it produces, so a
-- crash can never leave an alert queued that the book does not know is open (the local
-- broker's redelivery would raise it again under a new id).
CREATE TABLE docs (
    name  TEXT PRIMARY KEY,
    body  TEXT NOT NULL
);
