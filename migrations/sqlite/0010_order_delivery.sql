-- What the selling household needs of a partner's order: the buyer's number and where the
-- parcel goes (recipient, number, address line, commune of the 2025 list). NULL for orders
-- placed otherwise (seed-demo before this, the command line, tests).
ALTER TABLE orders ADD COLUMN buyer_phone TEXT;
ALTER TABLE orders ADD COLUMN delivery_name TEXT;
ALTER TABLE orders ADD COLUMN delivery_phone TEXT;
ALTER TABLE orders ADD COLUMN delivery_address TEXT;
ALTER TABLE orders ADD COLUMN delivery_commune_code INTEGER REFERENCES communes (code);
