-- Refunds (DESIGN §7). One refund takes money back from one capture (one logistic order);
-- its lines say what each party gives back. A refund in AWAITING_FUNDS or WAITING_REFUND holds
-- its amount against what is refundable; FAILED releases it. Refunds of one payment are
-- serialised by the payment row's lock (payments ... FOR UPDATE) in the transaction that
-- reserves the amount.
CREATE TABLE refunds (
    id                      text        PRIMARY KEY,
    tenant_id               text        NOT NULL,
    payment_id              text        NOT NULL,
    order_id                text        NOT NULL,
    capture_id              text        NOT NULL REFERENCES captures (id),
    logistic_order_id       text        NOT NULL,
    supplier_id             text        NOT NULL,
    amount                  bigint      NOT NULL CHECK (amount > 0),
    currency                text        NOT NULL,
    platform_amount         bigint      NOT NULL CHECK (platform_amount >= 0),
    marketplace_amount      bigint      NOT NULL CHECK (marketplace_amount >= 0),
    supplier_amount         bigint      NOT NULL CHECK (supplier_amount >= 0),
    reason                  text        NOT NULL,
    description             text,
    status                  text        NOT NULL
                            CHECK (status IN ('AWAITING_FUNDS', 'WAITING_REFUND', 'REFUNDED',
                                              'FAILED')),
    send_state              text        NOT NULL
                            CHECK (send_state IN ('NOT_DUE', 'DUE', 'RECEIVED', 'UNKNOWN',
                                                  'DONE')),
    revision                integer     NOT NULL DEFAULT 1,
    funds_check             boolean     NOT NULL,
    -- filled from the payouts service's refund.funds_reserved / refund.funds_refused
    supplier_share_paid_out boolean,
    funding_transfer_id     text,
    psp_reference           text,
    attempts                integer     NOT NULL DEFAULT 0,
    next_attempt_at         timestamptz,
    lease_until             timestamptz,
    lease_token             uuid,
    failure_code            text,
    failure_message         text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    refunded_at             timestamptz,
    CHECK (platform_amount + marketplace_amount + supplier_amount = amount)
);
CREATE INDEX refunds_payment ON refunds (tenant_id, payment_id, created_at);
CREATE INDEX refunds_capture ON refunds (capture_id);
CREATE INDEX refunds_tenant_created ON refunds (tenant_id, created_at DESC, id DESC);
CREATE INDEX refunds_due ON refunds (next_attempt_at) WHERE send_state = 'DUE';
CREATE INDEX refunds_unconfirmed ON refunds (updated_at)
    WHERE status IN ('AWAITING_FUNDS', 'WAITING_REFUND');

-- Every change of a refund, and every notification that changed nothing (with why).
CREATE TABLE refund_history (
    seq         bigserial   PRIMARY KEY,
    refund_id   text        NOT NULL REFERENCES refunds (id),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    status_from text,
    status_to   text        NOT NULL,
    source      text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX refund_history_refund ON refund_history (refund_id, seq);

-- One dispute per payment, at its furthest stage. `debits` are the lines the money-taking
-- stage took per capture ([{capture_id, platform, marketplace, supplier}]); a reversal gives
-- them back.
CREATE TABLE disputes (
    id            text        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    payment_id    text        NOT NULL,
    psp_reference text        NOT NULL,
    stage         text        NOT NULL,
    debited       boolean     NOT NULL DEFAULT false,
    debits        jsonb       NOT NULL DEFAULT '[]',
    revision      integer     NOT NULL DEFAULT 1,
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, payment_id)
);

-- Every dispute notification received, applied or not (a backwards one is recorded, ignored).
CREATE TABLE dispute_notifications (
    seq             bigserial   PRIMARY KEY,
    dispute_id      text        NOT NULL REFERENCES disputes (id),
    notification_id text        NOT NULL,
    event_code      text        NOT NULL,
    amount          bigint,
    currency        text,
    applied         boolean     NOT NULL,
    detail          text,
    received_at     timestamptz NOT NULL DEFAULT now()
);

-- The intervention queue: a capture the PSP took and never confirmed is `unconfirmed` (never
-- failed); an intervention can be resolved with an operator's note.
ALTER TABLE interventions ADD COLUMN note text;
ALTER TABLE interventions DROP CONSTRAINT interventions_kind_check;
ALTER TABLE interventions ADD CONSTRAINT interventions_kind_check
    CHECK (kind IN ('retries_exhausted', 'psp_refused', 'capture_failed', 'blocked',
                    'unconfirmed'));

-- Refunds' interventions, beside the captures' (one open per refund): `unconfirmed` (awaiting
-- funds, or taken by the PSP and never confirmed, for the configured time) and
-- `refund_unknown` (no answer from the PSP after the retries). Never failed by guess: an
-- operator retries (same PSP key) or resolves with a note.
CREATE TABLE refund_interventions (
    id          text        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    refund_id   text        NOT NULL REFERENCES refunds (id),
    capture_id  text        NOT NULL,
    payment_id  text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('unconfirmed', 'refund_unknown')),
    code        text        NOT NULL,
    reason      text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('OPEN', 'RETRIED', 'RESOLVED')),
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz
);
CREATE UNIQUE INDEX refund_interventions_one_open ON refund_interventions (refund_id)
    WHERE status = 'OPEN';
CREATE INDEX refund_interventions_tenant_created
    ON refund_interventions (tenant_id, created_at DESC, id DESC);

-- the unconfirmed-capture watch reads captures SENT for long
CREATE INDEX captures_sent_since ON captures (updated_at) WHERE status = 'SENT';
