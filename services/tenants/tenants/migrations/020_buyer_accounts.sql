-- The bank-wire payment option of each buyer account (DESIGN §10): exclusive, set by
-- operators only; an account without a row has the default, BANK_WIRE_ON_ACCEPTANCE.
CREATE TABLE buyer_accounts (
    tenant_id      text        NOT NULL REFERENCES tenants (id),
    buyer_account  text        NOT NULL,
    payment_option text        NOT NULL
                   CHECK (payment_option IN ('BANK_WIRE_ON_DUE_DATE', 'BANK_WIRE_ON_ACCEPTANCE')),
    revision       integer     NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, buyer_account)
);
