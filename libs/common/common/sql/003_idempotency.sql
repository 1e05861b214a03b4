-- Idempotency-Key store (DESIGN §4). `scope` is the credential's tenant/principal, so two
-- tenants may use the same key without seeing each other's responses.
CREATE TABLE idempotency_keys (
    scope            text        NOT NULL,
    key              text        NOT NULL,
    method           text        NOT NULL,
    path             text        NOT NULL,
    request_hash     text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('running', 'done')),
    response_status  integer,
    response_body    bytea,
    response_type    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
