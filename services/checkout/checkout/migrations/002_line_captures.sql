-- Each line (logistic order) carries its own capture status, from the capture service's
-- capture.* events: PENDING (not captured), CAPTURE_PENDING, CAPTURED, CAPTURE_FAILED,
-- CAPTURE_BLOCKED. `capture_revision` is the capture's revision last applied: an older event
-- arriving late never overwrites a newer state.
ALTER TABLE payment_lines
    ADD COLUMN capture_id       text,
    ADD COLUMN capture_revision integer NOT NULL DEFAULT 0;
