-- No query of chogate reads events by subject (reports count by kind); the index cost a write
-- to a random page per event (the subject of a dialogue event is the household's number).
-- A lookup of one subject's history scans the table.
DROP INDEX IF EXISTS events_subject;
