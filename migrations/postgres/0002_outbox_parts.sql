-- Each SMS part the SMSC accepted, with the id it gave (canonical: lower case, no leading
-- zeros), so that delivery receipts can be matched part by part.
CREATE TABLE outbox_parts (
    outbox_id BIGINT NOT NULL REFERENCES outbox (id),
    part INTEGER NOT NULL,
    smsc TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'delivered', 'failed')),
    state TEXT,
    done_at_ms BIGINT,
    PRIMARY KEY (outbox_id, part)
);
CREATE INDEX outbox_parts_message ON outbox_parts (message_id);

-- Receipts that arrived before their submit_sm_resp was recorded (the id in the form the
-- response gives it); applied, and removed, when the part is recorded as sent.
CREATE TABLE receipts_pending (
    id BIGSERIAL PRIMARY KEY,
    smsc TEXT NOT NULL,
    message_id TEXT NOT NULL,
    delivered INTEGER NOT NULL,
    state TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX receipts_pending_message ON receipts_pending (message_id);
