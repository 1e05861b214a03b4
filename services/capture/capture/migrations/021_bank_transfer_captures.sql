-- A paid bank-transfer order is not captured at the PSP, but each of its logistic orders gets
-- a capture, SUCCEEDED at once with its split (trigger BANK_TRANSFER), so that it enters the
-- ledger like captured card money.
ALTER TABLE captures DROP CONSTRAINT captures_trigger_check;
ALTER TABLE captures ADD CONSTRAINT captures_trigger_check
    CHECK (trigger IN ('IMMEDIATE', 'DELAYED', 'ON_SHIPMENT', 'MANUAL', 'BANK_TRANSFER'));
