-- Outbox schema v1: the durable queue towards the hub and the alarm log.
-- Run in one transaction by edge.storage.outbox, which then sets PRAGMA user_version = 1.

-- Messages waiting for the hub broker's PUBACK. priority 0 = alert, 1 = aggregate.
-- AUTOINCREMENT: a seq is never reused, even after the newest row was acknowledged.
CREATE TABLE outbox (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    priority  INTEGER NOT NULL CHECK (priority IN (0, 1)),
    topic     TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    size      INTEGER NOT NULL,          -- estimated bytes, for the disk budget
    state_id  INTEGER                    -- alarm_state.id of an alert row, NULL for aggregates
);
-- Drain order (alerts first, then by seq) and budget drops (oldest aggregates) both walk it.
CREATE INDEX outbox_drain ON outbox (priority, seq);

-- The alarm log: one row per alert id, never deleted (social-alarm standards).
CREATE TABLE alarm_log (
    alert_id      TEXT PRIMARY KEY,
    type          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    raised_at     REAL NOT NULL,          -- seconds since the epoch, UTC
    room          TEXT,
    device_id     TEXT,
    delivered_at  REAL                    -- first PUBACK of any state of this alert
);

-- Every state change of every alert, and when the hub broker acknowledged that message.
CREATE TABLE alarm_state (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id      TEXT NOT NULL REFERENCES alarm_log (alert_id),
    state         TEXT NOT NULL,
    at            REAL NOT NULL,
    delivered_at  REAL
);
CREATE INDEX alarm_state_alert ON alarm_state (alert_id, id);

-- Counters that outlive a restart (dropped_aggregates).
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('dropped_aggregates', 0);

-- Append-only: no row of the alarm log is ever deleted, and only a missing delivered_at
-- may be filled in.
CREATE TRIGGER alarm_log_no_delete BEFORE DELETE ON alarm_log
BEGIN
    SELECT RAISE(ABORT, 'the alarm log is append-only');
END;
CREATE TRIGGER alarm_state_no_delete BEFORE DELETE ON alarm_state
BEGIN
    SELECT RAISE(ABORT, 'the alarm log is append-only');
END;
CREATE TRIGGER alarm_log_no_rewrite BEFORE UPDATE ON alarm_log
WHEN OLD.delivered_at IS NOT NULL
    OR NEW.alert_id IS NOT OLD.alert_id OR NEW.type IS NOT OLD.type
    OR NEW.severity IS NOT OLD.severity OR NEW.raised_at IS NOT OLD.raised_at
    OR NEW.room IS NOT OLD.room OR NEW.device_id IS NOT OLD.device_id
BEGIN
    SELECT RAISE(ABORT, 'the alarm log is append-only');
END;
CREATE TRIGGER alarm_state_no_rewrite BEFORE UPDATE ON alarm_state
WHEN OLD.delivered_at IS NOT NULL
    OR NEW.id IS NOT OLD.id OR NEW.alert_id IS NOT OLD.alert_id
    OR NEW.state IS NOT OLD.state OR NEW.at IS NOT OLD.at
BEGIN
    SELECT RAISE(ABORT, 'the alarm log is append-only');
END;
