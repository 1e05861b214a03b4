-- Transactional outbox: rows are written in the same transaction as the state they describe
-- and published by the relay, which sets published_at only after the broker's confirm.
CREATE TABLE outbox (
    seq            bigserial   PRIMARY KEY,
    id             uuid        NOT NULL UNIQUE,
    exchange       text        NOT NULL,
    routing_key    text        NOT NULL,
    aggregate_id   text,
    envelope       jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake the relay at commit time; it polls as well, so a lost notification only delays.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_' || current_schema(), '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
