-- An SMS's idempotency key held the text of the SMS, and a payment text (`TT <order> <PIN>`)
-- its PIN in the clear. Keys are now built from a digest of the text (keyed with a secret
-- of the process for payment texts). The old keys deduplicate retransmissions within their
-- minute only, so they are dropped rather than rewritten.
DELETE FROM idempotency_keys WHERE idem_key LIKE 'sms:%';
