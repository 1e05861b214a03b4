-- The tenant's time zone (IANA name): the calendar of its bank-transfer due dates.
ALTER TABLE tenants ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
