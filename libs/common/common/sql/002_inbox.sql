-- Inbox: the id of every message a consumer has applied, written in the handler's transaction.
CREATE TABLE inbox (
    message_id   uuid        NOT NULL,
    queue        text        NOT NULL,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, message_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
