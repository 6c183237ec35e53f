-- What a household says when it calls off an order it had accepted (shown to the partner).
ALTER TABLE orders ADD COLUMN cancel_reason TEXT;

-- The leader's list of registrations to confirm: pending households by village.
CREATE INDEX households_pending ON households (village_id, pending);

-- Products carry their own unit: honey by the litre, bo khai greens by the bunch.
UPDATE products SET unit = 'lít' WHERE code = 'mat_ong';
UPDATE products SET unit = 'bó', min_price = 10000, max_price = 30000 WHERE code = 'rau_bo_khai';
