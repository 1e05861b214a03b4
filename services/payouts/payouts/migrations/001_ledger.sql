-- The double-entry ledger (DESIGN §8). Amounts are signed minor units of the account's
-- currency: a positive balance of PLATFORM, MARKETPLACE or a SUPPLIER is what Marketpay owes
-- that party; PSP_CLEARING and BANK_CLEARING carry the other side (money at the PSP, money
-- sent to bank accounts), so each tenant-currency sums to zero.
CREATE TABLE accounts (
    id          bigserial   PRIMARY KEY,
    tenant_id   text        NOT NULL,
    currency    text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    type        text        NOT NULL CHECK (type IN
                    ('PLATFORM', 'MARKETPLACE', 'SUPPLIER', 'PSP_CLEARING', 'BANK_CLEARING')),
    supplier_id text        NOT NULL DEFAULT '',  -- '' except for SUPPLIER accounts
    balance     bigint      NOT NULL DEFAULT 0,
    held        bigint      NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, currency, type, supplier_id),
    UNIQUE (id, currency),
    CHECK ((type = 'SUPPLIER') = (supplier_id <> ''))
);

-- One row per ledger transaction; `idempotency_key` is derived from the event that caused it
-- (`capture:<capture_id>`, `refund:<refund_id>`, ...), unique per tenant.
CREATE TABLE ledger_transactions (
    id                bigserial   PRIMARY KEY,
    tenant_id         text        NOT NULL,
    idempotency_key   text        NOT NULL,
    kind              text        NOT NULL,
    currency          text        NOT NULL,
    content_hash      text        NOT NULL,
    supplier_id       text,
    logistic_order_id text,
    capture_id        text,
    ref_type          text,
    ref_id            text,
    posted_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX ledger_transactions_order
    ON ledger_transactions (tenant_id, supplier_id, logistic_order_id);

CREATE TABLE postings (
    id             bigserial   PRIMARY KEY,
    transaction_id bigint      NOT NULL REFERENCES ledger_transactions (id),
    account_id     bigint      NOT NULL,
    currency       text        NOT NULL,
    amount         bigint      NOT NULL CHECK (amount <> 0),
    posted_at      timestamptz NOT NULL,
    FOREIGN KEY (account_id, currency) REFERENCES accounts (id, currency)
);
CREATE INDEX postings_account ON postings (account_id, posted_at, id);
CREATE INDEX postings_transaction ON postings (transaction_id);

-- Same idempotency key, other content: recorded here, never posted a second time.
CREATE TABLE ledger_conflicts (
    id              bigserial   PRIMARY KEY,
    tenant_id       text        NOT NULL,
    idempotency_key text        NOT NULL,
    existing_hash   text        NOT NULL,
    offered_hash    text        NOT NULL,
    offered         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The database refuses an unbalanced transaction, whoever inserts it: checked at commit, so
-- the postings of one transaction can be inserted in any order and in several statements.
CREATE FUNCTION ledger_transaction_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT currency, sum(amount) AS total INTO bad
      FROM postings WHERE transaction_id = NEW.transaction_id
     GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in %: sum %',
            NEW.transaction_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balances';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER postings_balance AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balances();

CREATE FUNCTION ledger_transaction_has_postings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM postings WHERE transaction_id = NEW.id) < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has fewer than two postings', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_has_postings';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_transactions_postings AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_has_postings();

-- Postings and transactions are immutable: a correction is a new transaction.
CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_transactions_immutable BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();

-- Balance changes staged by `ledger_post` until the transaction commits (or a use case reads
-- balances): every entry of a consumer batch credits the hot PLATFORM and MARKETPLACE rows, and
-- their lock is then taken once, at commit, rather than held from the batch's first capture.
CREATE TABLE balance_deltas (
    xid        xid8   NOT NULL DEFAULT pg_current_xact_id(),
    account_id bigint NOT NULL,
    amount     bigint NOT NULL
);
CREATE INDEX balance_deltas_xid ON balance_deltas (xid);

-- Post a batch of ledger transactions in one round trip:
-- p_entries = [{"tenant_id", "currency", "key", "kind", "hash", "supplier_id",
--               "logistic_order_id", "capture_id", "ref_type", "ref_id",
--               "postings": [{"type", "supplier_id", "amount"}]}]
-- Each entry is posted, replayed (same key, same hash: nothing done) or a conflict (same key,
-- other hash: recorded in ledger_conflicts, nothing posted). The balances of the accounts
-- touched are staged in balance_deltas and applied by ledger_flush, once per account for the
-- whole transaction, the accounts locked in id order, so a batch of captures updates the hot
-- PLATFORM and MARKETPLACE rows once, not once per capture.
CREATE FUNCTION ledger_post(p_entries jsonb)
RETURNS TABLE (idempotency_key text, transaction_id bigint, outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    entry    jsonb;
    tx_id    bigint;
    existing record;
    ids      bigint[] := '{}';
    amounts  bigint[] := '{}';
    part_ids bigint[];
    part_amt bigint[];
BEGIN
    -- the accounts of the whole batch exist before its entries are posted (one statement)
    INSERT INTO accounts (tenant_id, currency, type, supplier_id)
    SELECT DISTINCT e->>'tenant_id', e->>'currency', p->>'type', coalesce(p->>'supplier_id', '')
      FROM jsonb_array_elements(p_entries) AS e, jsonb_array_elements(e->'postings') AS p
     WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.tenant_id = e->>'tenant_id'
             AND a.currency = e->>'currency' AND a.type = p->>'type'
             AND a.supplier_id = coalesce(p->>'supplier_id', ''))
    ON CONFLICT DO NOTHING;
    FOR entry IN SELECT value FROM jsonb_array_elements(p_entries) LOOP
        INSERT INTO ledger_transactions AS t
            (tenant_id, idempotency_key, kind, currency, content_hash, supplier_id,
             logistic_order_id, capture_id, ref_type, ref_id)
        VALUES (entry->>'tenant_id', entry->>'key', entry->>'kind', entry->>'currency',
                entry->>'hash', entry->>'supplier_id', entry->>'logistic_order_id',
                entry->>'capture_id', entry->>'ref_type', entry->>'ref_id')
        ON CONFLICT ON CONSTRAINT ledger_transactions_tenant_id_idempotency_key_key DO NOTHING
        RETURNING t.id INTO tx_id;
        IF tx_id IS NULL THEN
            SELECT t.id, t.content_hash INTO existing FROM ledger_transactions t
             WHERE t.tenant_id = entry->>'tenant_id' AND t.idempotency_key = entry->>'key';
            IF existing.content_hash = entry->>'hash' THEN
                idempotency_key := entry->>'key'; transaction_id := existing.id;
                outcome := 'replayed';
            ELSE
                INSERT INTO ledger_conflicts
                    (tenant_id, idempotency_key, existing_hash, offered_hash, offered)
                VALUES (entry->>'tenant_id', entry->>'key', existing.content_hash,
                        entry->>'hash', entry);
                idempotency_key := entry->>'key'; transaction_id := existing.id;
                outcome := 'conflict';
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;
        WITH new_postings AS (
            INSERT INTO postings (transaction_id, account_id, currency, amount, posted_at)
            SELECT tx_id, a.id, a.currency, (p->>'amount')::bigint, now()
              FROM jsonb_array_elements(entry->'postings') AS p
              JOIN accounts a
                ON a.tenant_id = entry->>'tenant_id' AND a.currency = entry->>'currency'
               AND a.type = p->>'type' AND a.supplier_id = coalesce(p->>'supplier_id', '')
            RETURNING account_id, amount
        )
        SELECT array_agg(account_id), array_agg(amount) INTO part_ids, part_amt
          FROM new_postings;
        ids := ids || part_ids;
        amounts := amounts || part_amt;
        idempotency_key := entry->>'key'; transaction_id := tx_id; outcome := 'posted';
        RETURN NEXT;
    END LOOP;
    INSERT INTO balance_deltas (account_id, amount)
    SELECT x.account_id, sum(x.amount) FROM unnest(ids, amounts) AS x(account_id, amount)
     GROUP BY x.account_id;
END $$;

-- Apply the transaction's staged balance deltas: one UPDATE per account, the accounts locked
-- in id order. Runs at commit (the deferred trigger below; the first firing does the work, the
-- others find nothing), or earlier when a use case is about to read balances
-- (`ledger.flush`).
CREATE FUNCTION ledger_flush() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ids    bigint[];
    totals bigint[];
BEGIN
    WITH d AS (DELETE FROM balance_deltas WHERE xid = pg_current_xact_id()
               RETURNING account_id, amount)
    SELECT array_agg(account_id ORDER BY account_id), array_agg(total ORDER BY account_id)
      INTO ids, totals
      FROM (SELECT account_id, sum(amount) AS total FROM d GROUP BY account_id) s;
    IF ids IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM accounts WHERE id = ANY(ids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE accounts a SET balance = a.balance + x.total, updated_at = now()
      FROM unnest(ids, totals) AS x(id, total) WHERE a.id = x.id;
END $$;

CREATE FUNCTION ledger_flush_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_flush();
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER balance_deltas_flush AFTER INSERT ON balance_deltas
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_flush_at_commit();

-- Holds: an amount of an account set aside (a payout in flight, a refund awaiting the PSP).
-- A hold resolves exactly once: the UPDATE from OPEN is the only way out.
CREATE TABLE holds (
    id          bigserial   PRIMARY KEY,
    tenant_id   text        NOT NULL,
    account_id  bigint      NOT NULL REFERENCES accounts (id),
    amount      bigint      NOT NULL CHECK (amount >= 0),
    ref_type    text        NOT NULL,
    ref_id      text        NOT NULL,
    status      text        NOT NULL DEFAULT 'OPEN'
                CHECK (status IN ('OPEN', 'SETTLED', 'RELEASED')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    UNIQUE (tenant_id, ref_type, ref_id)
);
CREATE INDEX holds_open ON holds (account_id) WHERE status = 'OPEN';
