-- Reports count events by kind. They now read these counts, which the writer adds to with
-- each group it commits, instead of counting through an index on events (kind): that
-- index cost, at every event written, an insert into a B-tree holding every event ever
-- written (5 % of the instructions of a USSD step). Events are append-only, so a count
-- only grows.
CREATE TABLE event_counts (
    kind TEXT PRIMARY KEY,
    n INTEGER NOT NULL CHECK (n >= 0)
) WITHOUT ROWID;
INSERT INTO event_counts (kind, n) SELECT kind, COUNT(*) FROM events GROUP BY kind;
DROP INDEX IF EXISTS events_kind;
