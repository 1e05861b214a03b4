-- Bank transfer on due date (DESIGN §10). A bank-transfer payment has one row here: where the
-- buyer sends the money (beneficiary IBAN, ISO 11649 creditor reference), what arrived so far
-- (`received`, and the `excess` owed back when over-paid), and its due date once an order
-- line shipped (a calendar date in the tenant's `time_zone`). `overdue_for` is the due date
-- for which `payment.overdue` was published: once per payment and due date.
CREATE TABLE bank_transfers (
    payment_id   text        PRIMARY KEY REFERENCES payments (id),
    tenant_id    text        NOT NULL,
    reference    text        NOT NULL UNIQUE,
    iban         text        NOT NULL,
    amount       bigint      NOT NULL CHECK (amount > 0),
    currency     char(3)     NOT NULL,
    received     bigint      NOT NULL DEFAULT 0 CHECK (received >= 0),
    excess       bigint      NOT NULL DEFAULT 0 CHECK (excess >= 0),
    shipped_at   timestamptz,
    time_zone    text        NOT NULL DEFAULT 'UTC',
    due_date     date,
    overdue_for  date,
    paid_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bank_transfers_due ON bank_transfers (due_date)
    WHERE due_date IS NOT NULL AND paid_at IS NULL;

-- Every incoming transfer the PSP reported, once per PSP reference (a transfer delivered
-- twice counts once). APPLIED: added to its payment; UNMATCHED: parked for an operator, who
-- ASSIGNs it to a payment or RETURNs it; REJECTED: never applicable (a non-positive amount).
CREATE TABLE incoming_transfers (
    id              text        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    psp_reference   text        NOT NULL,
    notification_id text        NOT NULL,
    reference       text        NOT NULL,
    amount          bigint      NOT NULL,
    currency        char(3)     NOT NULL,
    status          text        NOT NULL,
    reason          text,
    payment_id      text        REFERENCES payments (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    resolved_note   text,
    UNIQUE (tenant_id, psp_reference)
);
CREATE INDEX incoming_transfers_status ON incoming_transfers (tenant_id, status, created_at DESC, id DESC);
