-- Receipts are matched on outbox_parts (message_id), never on outbox.smsc_message_id (kept as
-- the first part's id for people to read): its index cost a write per message sent.
DROP INDEX IF EXISTS outbox_smsc_message;
