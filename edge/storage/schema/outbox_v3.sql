-- Outbox schema v3: alert rows found by their alarm-log state, for the hub's receipts.
-- Run in one transaction by edge.storage.outbox, which then sets PRAGMA user_version = 3.

-- A receipt names alert ids: their queued rows are found through alarm_state (by alert id)
-- and this index, not by walking every queued alert.
CREATE INDEX outbox_state ON outbox (state_id);
