-- Exports' own read models (event-carried state: exports never reads another service's tables)
-- and its export jobs. Amounts are non-negative minor units of `currency`; the direction of a
-- money movement is its own column, so no amount is ever negative (see docs/exports.md).

-- Every domain event the read models were built from, as received: `exports rebuild` truncates
-- the read models and applies this journal again, in the order it was received.
CREATE TABLE event_log (
    seq          bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    tenant_id    text        NOT NULL,
    envelope     jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per transaction event and logistic order: an authorisation (one row per line), a
-- capture, a refund (succeeded or failed), a chargeback and its reversal (one row per capture
-- it touches). `row_key` is the natural key of the fact, so the same fact arriving twice (a
-- replay, a producer's republish under a new envelope id) is one row.
CREATE TABLE transactions (
    tenant_id          text        NOT NULL,
    row_key            text        NOT NULL,
    revision           integer     NOT NULL,
    occurred_at        timestamptz NOT NULL,
    transaction_type   text        NOT NULL CHECK (transaction_type IN
                       ('AUTHORISATION', 'CAPTURE', 'REFUND', 'CHARGEBACK', 'CHARGEBACK_REVERSAL')),
    direction          text        NOT NULL CHECK (direction IN ('CREDIT', 'DEBIT', 'NONE')),
    status             text        NOT NULL,
    payment_id         text        NOT NULL,
    order_id           text        NOT NULL,
    logistic_order_id  text        NOT NULL,
    supplier_id        text        NOT NULL,
    reference_id       text        NOT NULL,
    capture_id         text,
    psp_reference      text,
    amount             bigint      NOT NULL CHECK (amount >= 0),
    currency           text        NOT NULL,
    platform_amount    bigint      CHECK (platform_amount >= 0),
    platform_rate      numeric,
    marketplace_amount bigint      CHECK (marketplace_amount >= 0),
    marketplace_rate   numeric,
    supplier_amount    bigint      CHECK (supplier_amount >= 0),
    reason             text,
    PRIMARY KEY (tenant_id, row_key)
);
CREATE INDEX transactions_by_time ON transactions (tenant_id, occurred_at, row_key);
CREATE INDEX transactions_by_supplier ON transactions (tenant_id, supplier_id, occurred_at);
-- a refund's or chargeback's rows carry the rates frozen at their capture, copied whichever of
-- the two arrives first (so a file is a plain scan, without a join)
CREATE INDEX transactions_by_capture ON transactions (tenant_id, capture_id)
    WHERE capture_id IS NOT NULL;

-- Payouts, full state at their newest revision; `created_at` is the earliest event's time.
CREATE TABLE payouts (
    tenant_id          text        NOT NULL,
    payout_id          text        NOT NULL,
    revision           integer     NOT NULL,
    kind               text        NOT NULL,
    supplier_id        text,
    status             text        NOT NULL,
    amount             bigint      NOT NULL CHECK (amount >= 0),
    currency           text        NOT NULL,
    period_start       timestamptz,
    period_end         timestamptz,
    logistic_order_ids text[]      NOT NULL,
    provider_reference text,
    code               text,
    message            text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, payout_id)
);
CREATE INDEX payouts_by_time ON payouts (tenant_id, created_at, payout_id);

CREATE TABLE funding_transfers (
    tenant_id           text        NOT NULL,
    funding_transfer_id text        NOT NULL,
    revision            integer     NOT NULL,
    status              text        NOT NULL,
    amount              bigint      NOT NULL CHECK (amount >= 0),
    currency            text        NOT NULL,
    source_account_type text        NOT NULL,
    target_account_type text        NOT NULL,
    supplier_id         text        NOT NULL,
    linked_type         text        NOT NULL,
    linked_id           text        NOT NULL,
    reason              text,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, funding_transfer_id)
);
CREATE INDEX funding_transfers_by_time
    ON funding_transfers (tenant_id, created_at, funding_transfer_id);

-- A cell a spreadsheet could run as a formula gets a leading single quote (OWASP CSV
-- injection). Every text cell of every export goes through it.
CREATE FUNCTION csv_safe(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    -- ascii() of the first character: '=' 61, '+' 43, '-' 45, '@' 64, tab 9, CR 13 (twice as
    -- fast as comparing left(value, 1) over millions of cells)
    RETURN CASE WHEN ascii(value) IN (61, 43, 45, 64, 9, 13) THEN '''' || value ELSE value END;

CREATE FUNCTION csv_time(value timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN to_char(value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');

-- Export jobs. A worker claims a PENDING job (or a RUNNING one whose lease ran out: its worker
-- died) with FOR UPDATE SKIP LOCKED, bumping `attempt`; it keeps the lease alive while it
-- writes, and the job completes only with the attempt that still holds it (fenced UPDATE).
CREATE TABLE exports (
    id                text        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    export_type       text        NOT NULL
                      CHECK (export_type IN ('transactions', 'supplier_payouts', 'funding_transfers')),
    filters           jsonb       NOT NULL,
    supplier_scope    text,       -- a supplier key's export: only that supplier's rows
    requested_by      text,       -- the API key id
    status            text        NOT NULL DEFAULT 'PENDING'
                      CHECK (status IN ('PENDING', 'RUNNING', 'READY', 'FAILED', 'EXPIRED')),
    attempt           integer     NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  timestamptz,
    rows_written      bigint      NOT NULL DEFAULT 0,
    rows_total        bigint,
    size_bytes        bigint,
    storage_key       text,
    error_code        text,
    error_message     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz,
    expires_at        timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX exports_list ON exports (tenant_id, created_at DESC, id DESC);
CREATE INDEX exports_claimable ON exports (created_at, id) WHERE status IN ('PENDING', 'RUNNING');
CREATE INDEX exports_expiring ON exports (expires_at) WHERE status = 'READY';
