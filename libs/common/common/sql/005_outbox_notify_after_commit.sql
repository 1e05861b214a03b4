-- PostgreSQL serialises the commits of every transaction that sent a NOTIFY (a cluster-wide
-- lock, taken before the commit record and held until after its WAL flush), so transactions
-- that write the outbox could not share a WAL flush: under load their COMMITs queued on that
-- lock one fsync at a time. A writer that says it will wake the relay itself, once committed
-- (`common.db.notify_after_commit`: the consumers' and the group commit's transactions),
-- sets marketpay.outbox_notify for its transaction: the trigger then only notes, for the
-- session, that the outbox was written (undone if the transaction rolls back), and the
-- writer notifies after its COMMIT if it was. Every other writer is woken for as before.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('marketpay.outbox_notify', true) = 'after_commit' THEN
        PERFORM set_config('marketpay.outbox_written', 'yes', false);
    ELSE
        PERFORM pg_notify('outbox_' || current_schema(), '');
    END IF;
    RETURN NULL;
END $$;
