-- An SMS's idempotency key held the text of the SMS, and a payment text (`TT <order> <PIN>`)
-- its PIN in the clear. Keys now hold a command's canonical form, or a digest of the text
-- keyed with a secret of the process. The old keys deduplicate retransmissions within their
-- minute only, so they are dropped rather than rewritten.
DELETE FROM idempotency_keys WHERE idem_key LIKE 'sms:%';

-- The outbox sweep drops receipts kept unmatched for an hour (a flood of receipts for ids
-- that are not ours must not make it scan them all).
CREATE INDEX receipts_pending_at ON receipts_pending (at_ms);
