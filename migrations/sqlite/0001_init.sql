-- chogate schema, SQLite flavour (keep in step with migrations/postgres/0001_init.sql).
-- Times are milliseconds since the Unix epoch (UTC); money is whole đồng (VND).
-- Listing and order codes (L000123, D000123) are derived from the ids, not stored.

-- The administrative units before the July 2025 reform, kept for history and for the
-- programme's early reports, which count by district.
CREATE TABLE districts_2024 (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE communes_2024 (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    district_code INTEGER NOT NULL REFERENCES districts_2024 (code)
);

-- The 65 communes and wards after the reform (official codes).
CREATE TABLE communes (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('xã', 'phường'))
);

-- Villages (thôn / bản) under a commune. name_key is the name lower-cased with its
-- whitespace collapsed, so "Thôn  Nà Lầm" and "thôn nà lầm" are one village.
-- pending: created by a household's self-registration, not yet confirmed by a leader.
CREATE TABLE villages (
    id INTEGER PRIMARY KEY,
    commune_code INTEGER NOT NULL REFERENCES communes (code),
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    pending INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (commune_code, name_key)
);

-- pin_hash: an Argon2id PHC string, never the PIN. pending: self-registered, not yet
-- confirmed by the village's team leader.
CREATE TABLE households (
    id INTEGER PRIMARY KEY,
    msisdn TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    village_id INTEGER NOT NULL REFERENCES villages (id),
    language TEXT NOT NULL CHECK (language IN ('vi', 'en')),
    has_epay INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0,
    pin_hash TEXT,
    pin_failures INTEGER NOT NULL DEFAULT 0,
    pin_locked_until_ms INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX households_village ON households (village_id);

-- One community technology team per village, led by one household.
CREATE TABLE teams (
    id INTEGER PRIMARY KEY,
    village_id INTEGER NOT NULL UNIQUE REFERENCES villages (id),
    leader_household_id INTEGER NOT NULL UNIQUE REFERENCES households (id),
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE team_members (
    team_id INTEGER NOT NULL REFERENCES teams (id),
    household_id INTEGER NOT NULL REFERENCES households (id),
    PRIMARY KEY (team_id, household_id)
);

-- The catalogue; sort_order gives the menu order (na first).
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name_vi TEXT NOT NULL,
    name_en TEXT NOT NULL,
    unit TEXT NOT NULL,
    min_price INTEGER NOT NULL,
    max_price INTEGER NOT NULL,
    sort_order INTEGER NOT NULL
);

CREATE TABLE listings (
    id INTEGER PRIMARY KEY,
    household_id INTEGER NOT NULL REFERENCES households (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity_kg INTEGER NOT NULL,
    price_per_kg INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'stopped', 'sold_out')),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX listings_household ON listings (household_id, status);

CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    listing_id INTEGER NOT NULL REFERENCES listings (id),
    household_id INTEGER NOT NULL REFERENCES households (id),
    buyer_name TEXT NOT NULL,
    quantity_kg INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (
        status IN ('new', 'accepted', 'rejected', 'shipped', 'delivered', 'paid', 'cancelled')
    ),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX orders_household ON orders (household_id, status);

CREATE TABLE payments (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL UNIQUE REFERENCES orders (id),
    household_id INTEGER NOT NULL REFERENCES households (id),
    amount INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL
);

-- The append-only audit log: who (actor), through what (channel), what (kind, subject,
-- data as JSON), when. Written in the same transaction as the change it records.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('ussd', 'sms', 'http', 'cli')),
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_kind ON events (kind);
CREATE INDEX events_subject ON events (subject);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

-- Idempotency keys: the first use of a key records the action's kind, the id of the row it
-- produced and its outcome ('ok', or 'pin_wrong:N' / 'pin_locked:T' for counted PIN
-- failures); a repeat replays that outcome.
CREATE TABLE idempotency_keys (
    idem_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    result_id INTEGER,
    outcome TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);

-- SMS waiting to be sent, written in the same transaction as the action that caused it.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    msisdn TEXT NOT NULL,
    text TEXT NOT NULL,
    lang TEXT NOT NULL CHECK (lang IN ('vi', 'en')),
    kind TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sent', 'delivered', 'failed', 'expired')),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    last_error TEXT,
    smsc TEXT,
    smsc_message_id TEXT,
    sent_at_ms INTEGER,
    done_at_ms INTEGER
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at_ms);
CREATE INDEX outbox_smsc_message ON outbox (smsc_message_id);
