-- no-transaction
-- SQLite evaluates `x IN ('a', 'b', 'c')` with more than two constants by building a
-- temporary B-tree of the constants, each time a row is inserted or the column updated
-- (opening and closing a temporary database for it): ~2 µs per row, which for the events,
-- listings and outbox written on every USSD step and every SMS was a tenth of the writer's
-- time. The same CHECKs written as comparisons cost nothing measurable. Nothing else changes:
-- same columns, defaults, keys, indexes and triggers.
--
-- A CHECK cannot be altered in place, so each table is rebuilt (SQLite's documented
-- procedure: https://www.sqlite.org/lang_altertable.html#otheralter). Other tables reference
-- these by name, so foreign keys are switched off while the old table is dropped and the new
-- one takes its name; hence no transaction around the file (a PRAGMA foreign_keys inside a
-- transaction does nothing) and one explicit transaction inside it. Run twice (a crash after
-- COMMIT, before the migration is recorded) it rebuilds the tables again: harmless.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

DROP TABLE IF EXISTS listings_new;
CREATE TABLE listings_new (
    id INTEGER PRIMARY KEY,
    household_id INTEGER NOT NULL REFERENCES households (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity_kg INTEGER NOT NULL,
    price_per_kg INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status = 'active' OR status = 'stopped' OR status = 'sold_out'),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
INSERT INTO listings_new (id, household_id, product_id, quantity_kg, price_per_kg, status, created_at_ms,
                          updated_at_ms)
    SELECT id, household_id, product_id, quantity_kg, price_per_kg, status, created_at_ms, updated_at_ms
    FROM listings;
DROP TABLE listings;
ALTER TABLE listings_new RENAME TO listings;
CREATE INDEX listings_household ON listings (household_id, status);

DROP TABLE IF EXISTS orders_new;
CREATE TABLE orders_new (
    id INTEGER PRIMARY KEY,
    listing_id INTEGER NOT NULL REFERENCES listings (id),
    household_id INTEGER NOT NULL REFERENCES households (id),
    buyer_name TEXT NOT NULL,
    quantity_kg INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (
        status = 'new' OR status = 'accepted' OR status = 'rejected' OR status = 'shipped'
        OR status = 'delivered' OR status = 'paid' OR status = 'cancelled'
    ),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
INSERT INTO orders_new (id, listing_id, household_id, buyer_name, quantity_kg, amount, status, created_at_ms,
                        updated_at_ms)
    SELECT id, listing_id, household_id, buyer_name, quantity_kg, amount, status, created_at_ms, updated_at_ms
    FROM orders;
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;
CREATE INDEX orders_household ON orders (household_id, status);
CREATE INDEX orders_created ON orders (created_at_ms);

DROP TABLE IF EXISTS events_new;
CREATE TABLE events_new (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel = 'ussd' OR channel = 'sms' OR channel = 'http' OR channel = 'cli'),
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO events_new (id, at_ms, actor, channel, kind, subject, data)
    SELECT id, at_ms, actor, channel, kind, subject, data FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_kind ON events (kind);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

DROP TABLE IF EXISTS outbox_new;
CREATE TABLE outbox_new (
    id INTEGER PRIMARY KEY,
    msisdn TEXT NOT NULL,
    text TEXT NOT NULL,
    lang TEXT NOT NULL CHECK (lang IN ('vi', 'en')),
    kind TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (
        status = 'queued' OR status = 'sent' OR status = 'delivered' OR status = 'failed' OR status = 'expired'
    ),
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
INSERT INTO outbox_new (id, msisdn, text, lang, kind, status, created_at_ms, expires_at_ms, attempts,
                        next_attempt_at_ms, last_error, smsc, smsc_message_id, sent_at_ms, done_at_ms)
    SELECT id, msisdn, text, lang, kind, status, created_at_ms, expires_at_ms, attempts, next_attempt_at_ms,
           last_error, smsc, smsc_message_id, sent_at_ms, done_at_ms
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at_ms);

DROP TABLE IF EXISTS outbox_parts_new;
CREATE TABLE outbox_parts_new (
    outbox_id INTEGER NOT NULL REFERENCES outbox (id),
    part INTEGER NOT NULL,
    smsc TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'sent' CHECK (status = 'sent' OR status = 'delivered' OR status = 'failed'),
    state TEXT,
    done_at_ms INTEGER,
    PRIMARY KEY (outbox_id, part)
);
INSERT INTO outbox_parts_new (outbox_id, part, smsc, message_id, status, state, done_at_ms)
    SELECT outbox_id, part, smsc, message_id, status, state, done_at_ms FROM outbox_parts;
DROP TABLE outbox_parts;
ALTER TABLE outbox_parts_new RENAME TO outbox_parts;
CREATE INDEX outbox_parts_message ON outbox_parts (message_id);

COMMIT;
PRAGMA foreign_keys = ON;
