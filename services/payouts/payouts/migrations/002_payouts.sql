-- What payouts needs to know of the other services, kept from their events (event-carried
-- state; payouts never reads another service's tables).

-- payment.status_changed: eligibility needs the payment PAID.
CREATE TABLE payments (
    tenant_id   text        NOT NULL,
    payment_id  text        NOT NULL,
    status      text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, payment_id)
);

-- OMS logistic_order.status_changed: eligibility needs an allowed logistic status. The newest
-- event (by the OMS's occurred_at) wins; an older one arriving late changes nothing.
CREATE TABLE logistic_orders (
    tenant_id         text        NOT NULL,
    order_id          text        NOT NULL,
    logistic_order_id text        NOT NULL,
    supplier_id       text        NOT NULL,
    status            text        NOT NULL,
    occurred_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, order_id, logistic_order_id)
);

-- capture.succeeded: one row per capture (= one logistic order of one supplier).
CREATE TABLE captures (
    tenant_id         text        NOT NULL,
    capture_id        text        NOT NULL,
    payment_id        text        NOT NULL,
    order_id          text        NOT NULL,
    logistic_order_id text        NOT NULL,
    supplier_id       text        NOT NULL,
    currency          text        NOT NULL,
    amount            bigint      NOT NULL,
    supplier_amount   bigint      NOT NULL,
    captured_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, capture_id)
);
CREATE INDEX captures_supplier ON captures (tenant_id, supplier_id);

-- The funding answer to each refund.requested, and what became of the refund.
CREATE TABLE refunds (
    tenant_id           text        NOT NULL,
    refund_id           text        NOT NULL,
    capture_id          text        NOT NULL,
    payment_id          text        NOT NULL,
    supplier_id         text        NOT NULL,
    currency            text        NOT NULL,
    supplier_amount     bigint      NOT NULL,
    funds_check         boolean     NOT NULL,
    status              text        NOT NULL
                        CHECK (status IN ('RESERVED', 'REFUSED', 'SUCCEEDED', 'FAILED')),
    code                text,
    funding_transfer_id text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, refund_id)
);

CREATE TABLE chargebacks (
    tenant_id     text        NOT NULL,
    chargeback_id text        NOT NULL,
    payment_id    text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('RECEIVED', 'REVERSED')),
    revision      int         NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chargeback_id)
);

-- MARKETPLACE → SUPPLIER advances (ADM-PAY-553 / 503), linked to what caused them; one per
-- cause and supplier. `recovered` grows as later payouts take the advance back.
CREATE TABLE funding_transfers (
    id                  text        PRIMARY KEY,
    tenant_id           text        NOT NULL,
    supplier_id         text        NOT NULL,
    currency            text        NOT NULL,
    amount              bigint      NOT NULL CHECK (amount > 0),
    recovered           bigint      NOT NULL DEFAULT 0 CHECK (recovered BETWEEN 0 AND amount),
    status              text        NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'FAILED')),
    reason              text,
    source_account_type text        NOT NULL,
    target_account_type text        NOT NULL,
    linked_type         text        NOT NULL CHECK (linked_type IN ('PAYOUT', 'REFUND', 'CHARGEBACK')),
    linked_id           text        NOT NULL,
    revision            int         NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, linked_type, linked_id, supplier_id)
);
CREATE INDEX funding_transfers_list ON funding_transfers (tenant_id, created_at DESC, id DESC);

CREATE TABLE payouts (
    id                  text        PRIMARY KEY,
    tenant_id           text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('SUPPLIER', 'MARKETPLACE')),
    supplier_id         text,
    currency            text        NOT NULL,
    amount              bigint      NOT NULL,
    status              text        NOT NULL CHECK (status IN ('COMPUTED', 'SKIPPED', 'PENDING',
                            'SETTLED', 'FAILED', 'INSUFFICIENT_FUNDS', 'UNKNOWN')),
    period_start        timestamptz,
    period_end          timestamptz,
    code                text,
    message             text,
    recovered           bigint      NOT NULL DEFAULT 0,
    funding_transfer_id text,
    provider_reference  text,       -- the provider's order id: `<payout id>` then `-<attempt>`
    attempt             int         NOT NULL DEFAULT 0,  -- retries after FAILED
    auto_retry          boolean     NOT NULL DEFAULT true,  -- false: left to an operator
    iban                text,
    beneficiary         text,
    next_poll_at        timestamptz,  -- PENDING / UNKNOWN: when to ask the provider again
    polls               int         NOT NULL DEFAULT 0,
    unknown_since       timestamptz,
    revision            int         NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payouts_list ON payouts (tenant_id, created_at DESC, id DESC);
CREATE INDEX payouts_due ON payouts (next_poll_at) WHERE status IN ('PENDING', 'UNKNOWN');
-- at most one live payout per supplier per period
CREATE UNIQUE INDEX payouts_one_per_period ON payouts (tenant_id, kind, coalesce(supplier_id, ''),
    period_end) WHERE status IN ('COMPUTED', 'PENDING', 'SETTLED', 'UNKNOWN');

CREATE TABLE payout_lines (
    payout_id         text   NOT NULL REFERENCES payouts (id),
    tenant_id         text   NOT NULL,
    capture_id        text   NOT NULL,
    logistic_order_id text   NOT NULL,
    amount            bigint NOT NULL,
    PRIMARY KEY (payout_id, capture_id)
);
CREATE INDEX payout_lines_capture ON payout_lines (tenant_id, capture_id);

CREATE TABLE payout_history (
    id          bigserial   PRIMARY KEY,
    payout_id   text        NOT NULL REFERENCES payouts (id),
    status_from text,
    status      text        NOT NULL,
    note        text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payout_history_payout ON payout_history (payout_id, at);

CREATE INDEX ledger_transactions_capture ON ledger_transactions (tenant_id, capture_id);

-- UNKNOWN (or PENDING) payouts older than the configured age, for a person (once each).
CREATE TABLE payout_interventions (
    id          bigserial   PRIMARY KEY,
    tenant_id   text        NOT NULL,
    payout_id   text        NOT NULL UNIQUE REFERENCES payouts (id),
    reason      text        NOT NULL,
    status      text        NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'RESOLVED')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The durable scheduler: a run of a tenant's schedule is claimed by inserting its slot; two
-- replicas racing for the same slot insert it once.
CREATE TABLE schedule_runs (
    tenant_id  text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('SUPPLIER', 'MARKETPLACE')),
    slot       timestamptz NOT NULL,
    payouts    int         NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, slot)
);

-- The marketplace's own bank account, for marketplace payouts (set by its operator here).
CREATE TABLE marketplace_bank_accounts (
    tenant_id  text        PRIMARY KEY,
    iban       text        NOT NULL,
    holder     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
