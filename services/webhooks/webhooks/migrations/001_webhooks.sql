-- PSP notifications as received, append-only. The dedupe key is (psp, psp_reference,
-- event_code, success, original_reference); an absent original reference is stored as ''
-- so the key is unique with it. `created_at` is when the notification was received.
CREATE TABLE notifications (
    id                 text        PRIMARY KEY,
    tenant_id          text        NOT NULL,
    psp                text        NOT NULL,
    merchant_account   text        NOT NULL,
    event_code         text        NOT NULL,
    success            boolean     NOT NULL,
    psp_reference      text        NOT NULL,
    original_reference text        NOT NULL DEFAULT '',
    merchant_reference text        NOT NULL,
    amount             bigint,
    currency           text,
    raw                jsonb       NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_dedupe
        UNIQUE (psp, psp_reference, event_code, success, original_reference)
);
CREATE INDEX notifications_tenant_created ON notifications (tenant_id, created_at DESC, id DESC);

-- Deliveries refused for their signature or merchant account: never the key, never published.
CREATE TABLE security_log (
    id                 text        PRIMARY KEY,
    tenant_id          text,
    psp                text        NOT NULL,
    reason             text        NOT NULL,
    merchant_account   text,
    psp_reference      text,
    event_code         text,
    remote             text,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX security_log_tenant_created ON security_log (tenant_id, created_at DESC, id DESC);

-- A notification delivered again with another amount: recorded, not applied.
CREATE TABLE anomalies (
    id               bigserial   PRIMARY KEY,
    tenant_id        text        NOT NULL,
    notification_id  text        NOT NULL REFERENCES notifications (id),
    kind             text        NOT NULL,
    stored_amount    bigint,
    received_amount  bigint,
    raw              jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- The PSP's HMAC keys per merchant account, AES-GCM encrypted with the configured key
-- (`encryption_key_id` names which); at most two active per merchant account (rotation).
CREATE TABLE hmac_keys (
    id                text        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    merchant_account  text        NOT NULL,
    nonce             bytea       NOT NULL,
    ciphertext        bytea       NOT NULL,
    encryption_key_id text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz
);
CREATE INDEX hmac_keys_active ON hmac_keys (merchant_account) WHERE revoked_at IS NULL;
