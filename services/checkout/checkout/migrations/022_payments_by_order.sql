-- A SHIPPED event names the tenant's order and logistic order; finding its bank-transfer
-- payment (if any) must not scan every payment of the tenant, whose number grows with history.
CREATE INDEX payments_tenant_order ON payments (tenant_id, order_id);
