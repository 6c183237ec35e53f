-- No query of chogate reads events by subject (reports count by kind); the index cost a write
-- to a random page per event (the subject of a dialogue event is the household's number),
-- which was most of the pages each group commit wrote. A lookup of one subject's history
-- scans the table.
DROP INDEX IF EXISTS events_subject;

-- Idempotency keys are only ever looked up by key: one B-tree keyed by it instead of a rowid
-- table plus a unique index (one page write per action instead of two).
CREATE TABLE idempotency_keys_new (
    idem_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    result_id INTEGER,
    outcome TEXT NOT NULL,
    at_ms INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO idempotency_keys_new (idem_key, kind, result_id, outcome, at_ms)
    SELECT idem_key, kind, result_id, outcome, at_ms FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_new RENAME TO idempotency_keys;
