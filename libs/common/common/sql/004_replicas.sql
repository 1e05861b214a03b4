-- Local replicas of the tenants service's aggregates, kept by the tenancy consumer
-- (event-carried state transfer). `revision` makes out-of-order delivery harmless.
CREATE TABLE replica_tenants (
    tenant_id   text        PRIMARY KEY,
    revision    bigint      NOT NULL,
    merchant_account text   NOT NULL,
    data        jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replica_tenants_merchant_account ON replica_tenants (merchant_account);

CREATE TABLE replica_suppliers (
    tenant_id   text        NOT NULL,
    supplier_id text        NOT NULL,
    revision    bigint      NOT NULL,
    data        jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, supplier_id)
);

CREATE TABLE replica_api_keys (
    key_id      text        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    revision    bigint      NOT NULL,
    key_hash    text        NOT NULL UNIQUE,
    role        text        NOT NULL,
    supplier_id text,
    revoked     boolean     NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
