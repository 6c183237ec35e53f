-- What a household says when it calls off an order it had accepted (shown to the partner).
ALTER TABLE orders ADD COLUMN cancel_reason TEXT;

-- The leader's list of registrations to confirm: pending households by village.
CREATE INDEX households_pending ON households (village_id, pending);
