-- The tenant's time zone (IANA name): the calendar of its bank-transfer due dates.
ALTER TABLE tenants ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
-- The account buyers pay bank transfers into (an IBAN; NULL: checkout's configured one).
ALTER TABLE tenants ADD COLUMN bank_transfer_iban text;
