-- An outbox file written by schema v1 (edge/schema/outbox_v1.sql), dumped with iterdump.
-- 2 alerts: a fall raised then cancelled (both delivered), an inactivity still queued;
-- 1 daily aggregate queued (seq 4 and 5 remain; seq 1..3 were acknowledged).
PRAGMA user_version = 1;
BEGIN TRANSACTION;
CREATE TABLE alarm_log (
    alert_id      TEXT PRIMARY KEY,
    type          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    raised_at     REAL NOT NULL,          -- seconds since the epoch, UTC
    room          TEXT,
    device_id     TEXT,
    delivered_at  REAL                    -- first PUBACK of any state of this alert
);
INSERT INTO "alarm_log" VALUES('018bcfe5-6800-7000-8000-000000000001','fall','critical',1700000000.0,'bedroom','wear-1',1700000001.5);
INSERT INTO "alarm_log" VALUES('018bcfe5-6800-7000-8000-000000000002','inactivity','high',1700000600.0,'living',NULL,NULL);
CREATE TABLE alarm_state (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id      TEXT NOT NULL REFERENCES alarm_log (alert_id),
    state         TEXT NOT NULL,
    at            REAL NOT NULL,
    delivered_at  REAL
);
INSERT INTO "alarm_state" VALUES(1,'018bcfe5-6800-7000-8000-000000000001','raised',1700000000.0,1700000001.5);
INSERT INTO "alarm_state" VALUES(2,'018bcfe5-6800-7000-8000-000000000001','cancelled',1700000020.0,1700000021.25);
INSERT INTO "alarm_state" VALUES(3,'018bcfe5-6800-7000-8000-000000000002','raised',1700000600.0,NULL);
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO "meta" VALUES('dropped_aggregates',0);
CREATE TABLE outbox (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    priority  INTEGER NOT NULL CHECK (priority IN (0, 1)),
    topic     TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    size      INTEGER NOT NULL,          -- estimated bytes, for the disk budget
    state_id  INTEGER                    -- alarm_state.id of an alert row, NULL for aggregates
);
INSERT INTO "outbox" VALUES(4,0,'veille/v1/h-0001/alert',X'7B22736368656D61223A227665696C6C652E616C6572742F31222C226964223A2230313862636665352D363830302D373030302D383030302D303030303030303030303032222C22686F6D655F6964223A22682D30303031222C2274797065223A22696E6163746976697479222C227365766572697479223A2268696768222C227374617465223A22726169736564222C226174223A22323032332D31312D31345432323A32333A32302E3030305A222C227261697365645F6174223A22323032332D31312D31345432323A32333A32302E3030305A222C22726F6F6D223A226C6976696E67222C226465766963655F6964223A6E756C6C2C2265766964656E6365223A7B22696E6163746976655F6D696E223A3231322C22757375616C5F6D61785F6D696E223A39357D7D',370,3);
INSERT INTO "outbox" VALUES(5,1,'veille/v1/h-0001/aggregate/daily',X'7B22736368656D61223A227665696C6C652E6167677265676174652E6461696C792F31222C226E223A327D',123,NULL);
CREATE INDEX outbox_drain ON outbox (priority, seq);
CREATE INDEX alarm_state_alert ON alarm_state (alert_id, id);
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
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('alarm_state',3);
INSERT INTO "sqlite_sequence" VALUES('outbox',5);
COMMIT;
