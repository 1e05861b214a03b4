-- Replica of the tenants service's buyer accounts (`buyer_account.upserted`): the bank-wire
-- payment option each account may use; an account without a row has the default.
CREATE TABLE replica_buyer_accounts (
    tenant_id      text    NOT NULL,
    buyer_account  text    NOT NULL,
    payment_option text    NOT NULL,
    revision       integer NOT NULL,
    PRIMARY KEY (tenant_id, buyer_account)
);
