-- The tenants service's aggregates. Every aggregate row carries `revision`, bumped by each
-- change in the transaction that also writes its full-state event to the outbox.
CREATE TABLE tenants (
    id                         text        PRIMARY KEY,
    revision                   bigint      NOT NULL CHECK (revision >= 1),
    name                       text        NOT NULL,
    status                     text        NOT NULL DEFAULT 'active'
                                           CHECK (status IN ('active', 'disabled')),
    psp                        text        NOT NULL,
    merchant_account           text        NOT NULL UNIQUE,
    currency                   char(3)     NOT NULL,
    default_rate               numeric(7, 4) CHECK (default_rate BETWEEN 0 AND 100),
    capture_mode               text        NOT NULL
                               CHECK (capture_mode IN ('IMMEDIATE', 'DELAYED', 'ON_SHIPMENT', 'MANUAL')),
    capture_delay_hours        integer     NOT NULL DEFAULT 0
                               CHECK (capture_delay_hours BETWEEN 0 AND 720),
    allowed_logistic_statuses  text[]      NOT NULL CHECK (cardinality(allowed_logistic_statuses) > 0),
    marketplace_banking_mode   text        NOT NULL CHECK (marketplace_banking_mode IN ('DISABLED', 'ENABLED')),
    funding_policy             text        NOT NULL
                               CHECK (funding_policy IN ('MARKETPLACE_COVERS', 'REFUSE_REFUND')),
    payout_schedule            jsonb       NOT NULL,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CHECK (capture_mode <> 'DELAYED' OR capture_delay_hours > 0)
);

CREATE TABLE suppliers (
    id                      text        PRIMARY KEY,
    tenant_id               text        NOT NULL REFERENCES tenants (id),
    revision                bigint      NOT NULL CHECK (revision >= 1),
    name                    text        NOT NULL,
    kyc_status              text        NOT NULL CHECK (kyc_status IN (
                                'created', 'submitted', 'information_needed', 'enabled',
                                'rejected', 'disabled', 'archived')),
    iban                    text,
    payment_due_date_delay  integer     NOT NULL CHECK (payment_due_date_delay BETWEEN 0 AND 365),
    payment_due_date_mode   text        NOT NULL CHECK (payment_due_date_mode IN ('SIMPLE', 'END_OF_MONTH')),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX suppliers_page ON suppliers (tenant_id, created_at DESC, id DESC);

-- The commission matrix: one line per change, at most one active line per supplier; replaced
-- lines stay as history with `deactivated_at`.
CREATE TABLE commissions (
    id              text          PRIMARY KEY,
    tenant_id       text          NOT NULL REFERENCES tenants (id),
    supplier_id     text          NOT NULL REFERENCES suppliers (id),
    rate            numeric(7, 4) NOT NULL CHECK (rate BETWEEN 0 AND 100),
    active          boolean       NOT NULL,
    created_at      timestamptz   NOT NULL DEFAULT now(),
    deactivated_at  timestamptz,
    CHECK (active = (deactivated_at IS NULL))
);
CREATE UNIQUE INDEX commissions_one_active ON commissions (supplier_id) WHERE active;
CREATE INDEX commissions_page ON commissions (tenant_id, created_at DESC, id DESC);

-- API keys, stored only as SHA-256 of the key plus its first characters for recognition.
CREATE TABLE api_keys (
    id           text        PRIMARY KEY,
    tenant_id    text        NOT NULL REFERENCES tenants (id),
    revision     bigint      NOT NULL CHECK (revision >= 1),
    key_hash     text        NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    prefix       text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('operator', 'storefront', 'supplier')),
    supplier_id  text        REFERENCES suppliers (id),
    name         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CHECK ((role = 'supplier') = (supplier_id IS NOT NULL))
);
CREATE INDEX api_keys_page ON api_keys (tenant_id, created_at DESC, id DESC);
