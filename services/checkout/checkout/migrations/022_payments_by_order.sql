-- A SHIPPED event names the tenant's order and logistic order; finding its bank-transfer
-- payment (if any) must not scan every payment of the tenant, whose number grows with history.
-- IF NOT EXISTS: on a large table, build it first by hand with CREATE INDEX CONCURRENTLY (this
-- file runs in the start-up transaction, which would block writes to payments meanwhile).
CREATE INDEX IF NOT EXISTS payments_tenant_order ON payments (tenant_id, order_id);
