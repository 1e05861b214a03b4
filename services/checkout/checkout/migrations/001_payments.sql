-- A checkout session creates one payment; the drop-in acts on it with the session's client
-- token (stored hashed, short-lived). Amounts are minor units of `currency`.
CREATE TABLE payments (
    id                      text        PRIMARY KEY,
    tenant_id               text        NOT NULL,
    order_id                text        NOT NULL,
    buyer_account           text        NOT NULL,
    payment_option          text        NOT NULL,
    capture_mode            text,
    amount                  bigint      NOT NULL CHECK (amount > 0),
    currency                char(3)     NOT NULL,
    country_code            char(2),
    status                  text        NOT NULL,
    merchant_account        text        NOT NULL,
    return_url              text,
    psp_reference           text,
    result_code             text,
    refusal_reason          text,
    refusal_reason_code     text,
    level3                  jsonb,
    business_card           boolean,
    client_token_hash       text        NOT NULL UNIQUE,
    client_token_expires_at timestamptz NOT NULL,
    revision                integer     NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_tenant_created ON payments (tenant_id, created_at DESC, id DESC);
CREATE INDEX payments_psp_reference ON payments (psp_reference) WHERE psp_reference IS NOT NULL;

CREATE TABLE payment_lines (
    payment_id        text    NOT NULL REFERENCES payments (id),
    logistic_order_id text    NOT NULL,
    supplier_id       text    NOT NULL,
    amount            bigint  NOT NULL CHECK (amount >= 0),
    status            text    NOT NULL DEFAULT 'PENDING',
    PRIMARY KEY (payment_id, logistic_order_id)
);
CREATE INDEX payment_lines_supplier ON payment_lines (supplier_id);

-- Every status change and every PSP answer or notification about a payment, in order.
CREATE TABLE payment_timeline (
    seq          bigserial   PRIMARY KEY,
    payment_id   text        NOT NULL REFERENCES payments (id),
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    kind         text        NOT NULL,
    status_from  text,
    status_to    text,
    detail       jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX payment_timeline_payment ON payment_timeline (payment_id, seq);
