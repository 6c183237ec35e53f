-- The HTTP API (partners, admin, reports), SQLite flavour (keep in step with
-- migrations/postgres/0003_api.sql).

-- Bearer tokens. A token reads `cg_<public_id>_<secret>`; only the SHA-256 of the whole
-- token is kept (hex), found by its public id and compared in constant time. name is the
-- partner: tokens with the same name share orders and idempotency keys. scopes is a
-- space-separated list (orders:write payments:write shipments:write reports:read admin).
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    public_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

-- Every write through the API, by the partner's Idempotency-Key: the SHA-256 of the request
-- (method, path, body) and the first response, returned again for the same request; the
-- same key with another request is refused (409).
CREATE TABLE api_requests (
    id INTEGER PRIMARY KEY,
    partner TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (partner, idem_key)
);

-- Orders placed by partners: who placed it (only they see it), and the SMS that told the
-- household.
CREATE TABLE api_orders (
    order_id INTEGER PRIMARY KEY REFERENCES orders (id),
    partner TEXT NOT NULL,
    message_id INTEGER REFERENCES outbox (id)
);
CREATE INDEX api_orders_message ON api_orders (message_id);

-- Payments reported by payment partners, with their reference.
CREATE TABLE api_payments (
    order_id INTEGER PRIMARY KEY REFERENCES orders (id),
    partner TEXT NOT NULL,
    reference TEXT,
    at_ms INTEGER NOT NULL
);

-- Shipment events from the post office.
CREATE TABLE shipments (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    partner TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('shipped', 'delivered')),
    tracking_code TEXT,
    at_ms INTEGER NOT NULL
);
CREATE INDEX shipments_order ON shipments (order_id);

-- The reports count orders and payments by time.
CREATE INDEX orders_created ON orders (created_at_ms);
CREATE INDEX payments_at ON payments (at_ms);
