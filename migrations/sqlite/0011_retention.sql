-- `[database] retention_days`: the pruning task deletes idempotency keys and API request
-- records older than that, oldest first, in batches; without an index by time each batch
-- would scan the whole table. Keys are written in time order, so this index grows at its
-- right edge (one hot page per group commit).
CREATE INDEX idempotency_keys_at ON idempotency_keys (at_ms);
CREATE INDEX api_requests_created ON api_requests (created_at_ms);
