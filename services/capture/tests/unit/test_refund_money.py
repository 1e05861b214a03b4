"""The refund money rule (DESIGN §7): the worked examples exactly, and its properties for any
sequence of partial refunds and a chargeback of what is left."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.domain import CommissionSplit, split
from capture.refunds.domain import (
    CaptureBook,
    DisputeStage,
    DisputeState,
    PaymentView,
    RefundAsk,
    RefundPlan,
    Refusal,
    Shares,
    allocate,
    on_dispute_notification,
    plan_refund,
    return_lines,
)


def book(amount: int, platform: str | None, marketplace: str | None, cid: str = "cap_1"):
    result = split(
        amount,
        None if platform is None else Decimal(platform),
        None if marketplace is None else Decimal(marketplace),
    )
    assert isinstance(result, CommissionSplit)
    captured = Shares.from_lines([(line.party, line.amount) for line in result.lines])
    return CaptureBook(
        cid,
        f"lo_{cid}",
        "sup_1",
        amount,
        result.platform_rate,
        result.marketplace_rate,
        captured,
    )


def refund_all(b: CaptureBook, amounts: list[int]) -> list[Shares]:
    out = []
    for amount in amounts:
        lines = return_lines(b, amount)
        out.append(lines)
        b = b.after(lines)
    return out


def test_design_example_999():
    # given 999 at 2.5 % / 12.5 %: captured 25 / 125 / 849
    b = book(999, "2.5", "12.5")
    assert b.captured == Shares(25, 125, 849)
    # when refunding 500 then 499
    first, second = refund_all(b, [500, 499])
    # then
    assert first == Shares(13, 63, 424)
    assert second == Shares(12, 62, 425)


def test_design_example_20_rounding_boundary():
    # given 20 at 2.5 % / 2.5 %: captured 1 / 1 / 18
    b = book(20, "2.5", "2.5")
    assert b.captured == Shares(1, 1, 18)
    # when refunding 1 then 19: the marketplace line is cut first, and caught up next
    first, second = refund_all(b, [1, 19])
    # then
    assert first == Shares(1, 0, 0)
    assert second == Shares(0, 1, 18)


def test_absent_rate_gives_no_line():
    b = book(1000, None, "10")
    assert return_lines(b, 400) == Shares(0, 40, 360)


def test_refund_past_what_is_left_is_refused():
    b = book(100, "2.5", "10")
    with pytest.raises(ValueError, match="not within"):
        return_lines(b, 101)


rates = st.one_of(st.none(), st.decimals(min_value=0, max_value=40, places=2))


@st.composite
def refund_sequences(draw):
    amount = draw(st.integers(min_value=1, max_value=10**9))
    platform = draw(rates)
    marketplace = draw(rates)
    result = split(amount, platform, marketplace)
    if not isinstance(result, CommissionSplit):
        platform = marketplace = None
    parts = []
    left = amount
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        if left == 0:
            break
        part = draw(st.integers(min_value=1, max_value=left))
        parts.append(part)
        left -= part
    return amount, platform, marketplace, parts


@settings(max_examples=400, deadline=None)
@given(refund_sequences(), st.booleans())
def test_any_sequence_of_refunds(case, finish):
    amount, platform, marketplace, parts = case
    b = book(
        amount,
        None if platform is None else str(platform),
        None if marketplace is None else str(marketplace),
    )
    returned = Shares()
    for part in parts:
        lines = return_lines(b, part)
        # every line ≥ 0, and they sum to the refund
        assert min(lines.platform, lines.marketplace, lines.supplier) >= 0
        assert lines.total == part
        b = b.after(lines)
        returned = returned + lines
        # no party ever gives back more than it received
        kept = b.captured - b.returned
        assert min(kept.platform, kept.marketplace, kept.supplier) >= 0
    # a chargeback (or a last refund) takes exactly the remainder, and then every party has
    # given back exactly what it received
    rest = b.refundable
    if finish:
        taken = on_dispute_notification(DisputeState(None), DisputeStage.CHARGEBACK, None, [b], [])
        assert not isinstance(taken, Refusal)
        lines = sum((d.lines for d in taken.debits), Shares())  # type: ignore[union-attr]
    else:
        lines = return_lines(b, rest)
    assert lines.total == rest
    assert returned + lines == b.captured


def test_chargeback_after_partial_refund_takes_only_what_is_left():
    # given 10000 at 2.5 % / 10 % (250 / 1000 / 8750), 3000 refunded
    b = book(10000, "2.5", "10")
    b = b.after(return_lines(b, 3000))
    # when the chargeback of the full 10000 arrives
    change = on_dispute_notification(
        DisputeState(DisputeStage.NOTIFICATION_OF_CHARGEBACK),
        DisputeStage.CHARGEBACK,
        10000,
        [b],
        [],
    )
    # then it takes the 7000 left, each party the rest of what it received
    assert change.emit == "received"
    (debit,) = change.debits
    assert debit.lines == Shares(175, 700, 6125)
    assert b.returned + debit.lines == b.captured


def test_dispute_never_moves_back():
    state = DisputeState(DisputeStage.CHARGEBACK_REVERSED, debited=False)
    for stage in (DisputeStage.CHARGEBACK, DisputeStage.NOTIFICATION_OF_CHARGEBACK):
        outcome = on_dispute_notification(state, stage, 100, [book(100, "2.5", "10")], [])
        assert not hasattr(outcome, "emit"), outcome


def test_reversal_gives_back_what_was_debited_and_second_chargeback_debits_again():
    b = book(1000, "2.5", "10")
    debited = on_dispute_notification(DisputeState(None), DisputeStage.CHARGEBACK, None, [b], [])
    reversed_ = on_dispute_notification(
        debited.state, DisputeStage.CHARGEBACK_REVERSED, None, [b], debited.debits
    )
    assert reversed_.emit == "reversed"
    assert reversed_.debits == debited.debits
    again = on_dispute_notification(reversed_.state, DisputeStage.SECOND_CHARGEBACK, None, [b], [])
    assert again.emit == "received"
    won = on_dispute_notification(
        again.state, DisputeStage.PREARBITRATION_WON, None, [b], again.debits
    )
    assert won.emit == "reversed"
    assert not won.state.debited


@given(
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=5),
    st.integers(min_value=0, max_value=6 * 10**6),
)
def test_allocation_never_exceeds_what_each_holds(holdings, amount):
    books = [
        CaptureBook(f"c{i}", f"l{i}", "s", h, None, None, Shares(0, 0, h))
        for i, h in enumerate(holdings)
    ]
    parts = allocate(amount, books)
    assert sum(s for _, s in parts) == min(amount, sum(holdings))
    assert all(0 < s <= b.refundable for b, s in parts)


def view(**kw):
    base = {
        "status": "AUTHORISED",
        "currency": "EUR",
        "line_ids": frozenset({"lo_a", "lo_b"}),
        "payment_option": "CREDIT_CARD",
    }
    return PaymentView(**{**base, **kw})


def ask(amount=None, lo=None, currency="EUR", reason="customer_request"):
    return RefundAsk(amount, currency if amount is not None else None, lo, reason)


def two_books():
    a = book(10000, "2.5", "10", "cap_a")
    b = book(5000, "2.5", "10", "cap_b")
    return [
        CaptureBook(
            a.capture_id, "lo_a", "s", a.amount, a.platform_rate, a.marketplace_rate, a.captured
        ),
        CaptureBook(
            b.capture_id, "lo_b", "s", b.amount, b.platform_rate, b.marketplace_rate, b.captured
        ),
    ]


@pytest.mark.parametrize(
    ("payment", "books", "request_", "code", "param"),
    [
        (view(status="CREATED"), [], ask(), "payment_not_refundable", "id"),
        (view(status="CANCELLED"), [], ask(), "payment_not_refundable", "id"),
        (view(status="REFUSED"), [], ask(), "payment_not_refundable", "id"),
        (
            view(status="PAID", payment_option="BANK_WIRE_ON_DUE_DATE"),
            two_books(),
            ask(),
            "payment_not_refundable",
            "id",
        ),
        (view(), [], ask(100), "payment_not_captured", "id"),
        (view(), two_books(), ask(0, "lo_a"), "amount_invalid", "amount.value"),
        (view(), two_books(), ask(-5, "lo_a"), "amount_invalid", "amount.value"),
        (view(), two_books(), ask(100, "lo_a", "USD"), "currency_mismatch", "amount.currency"),
        (view(), two_books(), ask(100, "lo_x"), "logistic_order_unknown", "logistic_order_id"),
        (
            view(),
            two_books(),
            ask(10001, "lo_a"),
            "refund_exceeds_amount_available",
            "amount.value",
        ),
        (view(), two_books(), ask(100), "logistic_order_id_required", "logistic_order_id"),
        (view(), two_books(), ask(reason="because"), "refund_reason_invalid", "reason"),
        (
            view(dispute=DisputeStage.NOTIFICATION_OF_CHARGEBACK),
            two_books(),
            ask(),
            "payment_disputed",
            "id",
        ),
        (view(charged_back=True), two_books(), ask(), "payment_charged_back", "id"),
    ],
)
def test_refusals(payment, books, request_, code, param):
    refusal = plan_refund(payment, books, request_)
    assert isinstance(refusal, Refusal), refusal
    assert (refusal.code, refusal.param) == (code, param)


def test_no_amount_no_logistic_order_refunds_everything_per_capture():
    plans = plan_refund(view(), two_books(), ask())
    assert plans == [
        RefundPlan("cap_a", 10000, Shares(250, 1000, 8750)),
        RefundPlan("cap_b", 5000, Shares(125, 500, 4375)),
    ]


def test_amount_without_logistic_order_when_only_one_capture_has_anything_left():
    a, b = two_books()
    a = a.after(return_lines(a, a.amount))
    plans = plan_refund(view(), [a, b], ask(1000))
    assert isinstance(plans, list)
    assert [p.capture_id for p in plans] == ["cap_b"]


def test_fully_refunded():
    a, b = two_books()
    a = a.after(return_lines(a, a.amount))
    b = b.after(return_lines(b, b.amount))
    refusal = plan_refund(view(), [a, b], ask())
    assert isinstance(refusal, Refusal)
    assert refusal.code == "payment_fully_refunded"


def test_a_failed_refund_after_a_chargeback_is_taken_by_it_too():
    from capture.refunds.domain import CaptureDebit, merge_debits, top_up

    # given 4000 at 2.5 % / 10 %, a 1000 refund holding, the chargeback took the 3000 left
    b = book(4000, "2.5", "10")
    held = return_lines(b, 1000)
    charged = return_lines(b.after(held), 3000)
    # when the refund fails: its lines are released and the chargeback takes them
    released = b.after(charged)
    more = top_up(released, 1000)
    assert more is not None
    merged = merge_debits([CaptureDebit(b.capture_id, charged)], more)
    # then the chargeback has taken exactly what each party received
    assert merged[0].lines == b.captured
