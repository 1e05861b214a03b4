-- Payments as checkout reported them (payment.created, then payment.authorised with what a
-- capture needs, or payment.cancelled / .refused). Event-carried state: capture never reads
-- checkout's tables. Amounts are minor units of `currency`.
CREATE TABLE payments (
    tenant_id        text        NOT NULL,
    payment_id       text        NOT NULL,
    order_id         text        NOT NULL,
    payment_option   text        NOT NULL,
    status           text        NOT NULL
                     CHECK (status IN ('CREATED', 'AUTHORISED', 'CANCELLED', 'REFUSED')),
    capture_mode     text,       -- the session's override; NULL: the tenant's
    amount           bigint      NOT NULL,
    currency         text        NOT NULL,
    psp_reference    text,
    merchant_account text,
    level3           jsonb,
    authorised_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, payment_id)
);

CREATE TABLE payment_lines (
    tenant_id         text   NOT NULL,
    payment_id        text   NOT NULL,
    order_id          text   NOT NULL,
    logistic_order_id text   NOT NULL,
    supplier_id       text   NOT NULL,
    amount            bigint NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (tenant_id, payment_id, logistic_order_id),
    FOREIGN KEY (tenant_id, payment_id) REFERENCES payments (tenant_id, payment_id)
);
-- how an OMS event finds its line
CREATE INDEX payment_lines_logistic_order
    ON payment_lines (tenant_id, order_id, logistic_order_id);

-- One capture per (tenant, payment, logistic order): whatever triggers it (authorisation,
-- schedule, SHIPPED, ADM-PAY-101) inserts it with ON CONFLICT DO NOTHING, so a second trigger
-- finds it there. The executor claims PENDING rows that are due and not leased, calls the PSP
-- outside any transaction with `capture:<id>:<generation>`, and records the answer.
CREATE TABLE captures (
    id                    text        PRIMARY KEY,
    tenant_id             text        NOT NULL,
    payment_id            text        NOT NULL,
    order_id              text        NOT NULL,
    logistic_order_id     text        NOT NULL,
    supplier_id           text        NOT NULL,
    amount                bigint      NOT NULL CHECK (amount >= 0),
    currency              text        NOT NULL,
    trigger               text        NOT NULL
                          CHECK (trigger IN ('IMMEDIATE', 'DELAYED', 'ON_SHIPMENT', 'MANUAL')),
    status                text        NOT NULL
                          CHECK (status IN ('PENDING', 'SENT', 'SUCCEEDED', 'FAILED', 'BLOCKED')),
    revision              integer     NOT NULL DEFAULT 1,
    -- the split, frozen when the capture was decided: later rate changes never touch it
    platform_rate         numeric,
    marketplace_rate      numeric,
    splits                jsonb       NOT NULL DEFAULT '[]',
    additional_data       jsonb,      -- Level 3 as enhancedSchemeData.* (PCARD_L3)
    payment_psp_reference text        NOT NULL,
    merchant_account      text        NOT NULL,
    block_code            text,
    block_message         text,
    failure_code          text,
    failure_reason        text,
    outcome_known         boolean,    -- FAILED: true when the PSP certainly did not capture
    generation            integer     NOT NULL DEFAULT 1,
    attempts              integer     NOT NULL DEFAULT 0,
    round_attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at       timestamptz,
    lease_until           timestamptz,
    lease_token           uuid,
    psp_reference         text,       -- the PSP's reference of the capture itself
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    succeeded_at          timestamptz,
    UNIQUE (tenant_id, payment_id, logistic_order_id)
);
CREATE INDEX captures_due ON captures (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX captures_tenant_created ON captures (tenant_id, created_at DESC, id DESC);
CREATE INDEX captures_payment_psp_reference ON captures (tenant_id, payment_psp_reference);

-- Wake the executors (every replica LISTENs) when a capture becomes due to be sent; they
-- poll as well, so a lost notification only delays. Notifications of one transaction with
-- the same payload are delivered once.
CREATE FUNCTION captures_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('captures_' || current_schema(), '');
    RETURN NULL;
END $$;
CREATE TRIGGER captures_created AFTER INSERT ON captures
    FOR EACH ROW WHEN (NEW.status = 'PENDING') EXECUTE FUNCTION captures_notify();
CREATE TRIGGER captures_reopened AFTER UPDATE OF status ON captures
    FOR EACH ROW WHEN (NEW.status = 'PENDING' AND OLD.status <> 'PENDING')
    EXECUTE FUNCTION captures_notify();

-- Every PSP call of a capture. A row whose outcome stays NULL was in flight when its replica
-- died; the lease expired and another replica sent the same key again.
CREATE TABLE capture_attempts (
    capture_id      text        NOT NULL REFERENCES captures (id),
    attempt         integer     NOT NULL,
    generation      integer     NOT NULL,
    idempotency_key text        NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    outcome         text        CHECK (outcome IN ('received', 'unknown', 'refused')),
    code            text,
    detail          text,
    psp_reference   text,
    PRIMARY KEY (capture_id, attempt)
);

-- Every change of a capture, and every answer or notification that changed nothing.
CREATE TABLE capture_history (
    seq         bigserial   PRIMARY KEY,
    capture_id  text        NOT NULL REFERENCES captures (id),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    status_from text,
    status_to   text        NOT NULL,
    source      text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX capture_history_capture ON capture_history (capture_id, seq);

-- DELAYED: one row per payment, due at authorisation + the tenant's delay; the scheduler
-- claims due rows with FOR UPDATE SKIP LOCKED (any number of replicas), creates the captures
-- and marks the row DONE in the same transaction.
CREATE TABLE scheduled_captures (
    tenant_id  text        NOT NULL,
    payment_id text        NOT NULL,
    due_at     timestamptz NOT NULL,
    status     text        NOT NULL DEFAULT 'SCHEDULED'
               CHECK (status IN ('SCHEDULED', 'DONE', 'SKIPPED')),
    outcome    text,
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at    timestamptz,
    PRIMARY KEY (tenant_id, payment_id)
);
CREATE INDEX scheduled_captures_due ON scheduled_captures (due_at) WHERE status = 'SCHEDULED';

-- The manual-intervention queue: a capture that failed for good or was blocked waits here
-- for an operator's retry. At most one open intervention per capture.
CREATE TABLE interventions (
    id          text        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    capture_id  text        NOT NULL REFERENCES captures (id),
    kind        text        NOT NULL
                CHECK (kind IN ('retries_exhausted', 'psp_refused', 'capture_failed', 'blocked')),
    code        text        NOT NULL,
    reason      text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('OPEN', 'RETRIED', 'RESOLVED')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz
);
CREATE UNIQUE INDEX interventions_one_open ON interventions (capture_id) WHERE status = 'OPEN';
CREATE INDEX interventions_tenant_created ON interventions (tenant_id, created_at DESC, id DESC);

-- Every OMS logistic-order event received, with what it did: capture_created, recorded (a
-- status that captures nothing), awaiting_authorisation (a SHIPPED before its payment's
-- authorisation: the authorisation captures it), ignored (with the reason).
CREATE TABLE logistic_order_events (
    id                text        PRIMARY KEY,  -- the inbox message id (a UUID)
    oms_event_id      text        NOT NULL,
    tenant_id         text        NOT NULL,
    order_id          text        NOT NULL,
    logistic_order_id text        NOT NULL,
    supplier_id       text        NOT NULL,
    status            text        NOT NULL,
    occurred_at       timestamptz NOT NULL,
    outcome           text        NOT NULL
                      CHECK (outcome IN ('capture_created', 'recorded', 'awaiting_authorisation',
                                         'ignored')),
    reason            text,
    payment_id        text,
    capture_id        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX logistic_order_events_tenant_created
    ON logistic_order_events (tenant_id, created_at DESC, id DESC);
CREATE INDEX logistic_order_events_waiting
    ON logistic_order_events (tenant_id, order_id, logistic_order_id)
    WHERE status = 'SHIPPED' AND outcome IN ('awaiting_authorisation', 'ignored');
