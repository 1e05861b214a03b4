"""The commission split (DESIGN §6): the worked examples exactly, and its properties for any
amount and rates."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.domain import Blocked, CommissionSplit, SplitLine, psp_splits, split


def amounts(result):
    assert isinstance(result, CommissionSplit), result
    return [(line.party, line.amount) for line in result.lines]


@pytest.mark.parametrize(
    ("amount", "platform", "marketplace", "expected"),
    [
        (10000, "2.5", "10", [("PLATFORM", 250), ("MARKETPLACE", 1000), ("SUPPLIER", 8750)]),
        (999, "2.5", "12.5", [("PLATFORM", 25), ("MARKETPLACE", 125), ("SUPPLIER", 849)]),
        (1, "30", "30", [("PLATFORM", 0), ("MARKETPLACE", 0), ("SUPPLIER", 1)]),
    ],
)
def test_the_design_worked_examples(amount, platform, marketplace, expected):
    # when
    result = split(amount, Decimal(platform), Decimal(marketplace))
    # then
    assert amounts(result) == expected


def test_the_design_worked_example_that_is_blocked():
    # when: 100 at 60 % / 50 % → 60 + 50 > 100
    result = split(100, Decimal("60"), Decimal("50"))
    # then
    assert isinstance(result, Blocked)
    assert result.code == "split_invalid"
    assert "platform 60, marketplace 50, supplier -10" in result.message


def test_an_absent_rate_gives_no_line():
    # when
    no_platform = split(10000, None, Decimal("10"))
    no_marketplace = split(10000, Decimal("2.5"), None)
    neither = split(10000, None, None)
    # then
    assert amounts(no_platform) == [("MARKETPLACE", 1000), ("SUPPLIER", 9000)]
    assert amounts(no_marketplace) == [("PLATFORM", 250), ("SUPPLIER", 9750)]
    assert amounts(neither) == [("SUPPLIER", 10000)]


def test_halves_round_up_and_the_cent_lands_on_the_supplier():
    # when: 2.5 % of 20 is 0.5, 12.5 % of 20 is 2.5
    result = split(20, Decimal("2.5"), Decimal("12.5"))
    # then: 0.5 → 1 and 2.5 → 3; the supplier takes what is left
    assert amounts(result) == [("PLATFORM", 1), ("MARKETPLACE", 3), ("SUPPLIER", 16)]


def test_the_rates_are_frozen_in_the_split():
    # when
    result = split(999, Decimal("2.5"), Decimal("12.5"))
    # then
    assert isinstance(result, CommissionSplit)
    assert (result.platform_rate, result.marketplace_rate) == (Decimal("2.5"), Decimal("12.5"))
    assert [line.rate for line in result.lines] == [Decimal("2.5"), Decimal("12.5"), None]


def expected_commission(amount: int, basis: int) -> int:
    """round_half_up(amount × rate / 100) with rate = basis / 10^4, in integers only."""
    return (2 * amount * basis + 10**6) // (2 * 10**6)


rates = st.one_of(st.none(), st.integers(min_value=0, max_value=1_000_000))


@given(amount=st.integers(min_value=1, max_value=10**12), platform=rates, marketplace=rates)
def test_any_split_is_blocked_or_its_lines_are_positive_and_sum_to_the_amount(
    amount, platform, marketplace
):
    # given: rates 0..100 with up to four decimals, or absent
    platform_rate = None if platform is None else Decimal(platform).scaleb(-4)
    marketplace_rate = None if marketplace is None else Decimal(marketplace).scaleb(-4)
    # when
    result = split(amount, platform_rate, marketplace_rate)
    # then
    commissions = [
        expected_commission(amount, basis) for basis in (platform, marketplace) if basis is not None
    ]
    if sum(commissions) > amount:
        assert isinstance(result, Blocked)
        return
    assert isinstance(result, CommissionSplit)
    assert all(line.amount >= 0 for line in result.lines)
    assert sum(line.amount for line in result.lines) == amount
    assert [line.amount for line in result.lines[:-1]] == commissions
    parties = [line.party for line in result.lines]
    assert ("PLATFORM" in parties) == (platform is not None)
    assert ("MARKETPLACE" in parties) == (marketplace is not None)
    assert parties[-1] == "SUPPLIER"


def test_psp_splits_name_each_party_and_leave_zero_lines_out():
    # given
    lines = [
        SplitLine("PLATFORM", 0, Decimal("30")),
        SplitLine("MARKETPLACE", 125, Decimal("12.5")),
        SplitLine("SUPPLIER", 874, None),
    ]
    # when
    splits = psp_splits(lines, tenant_id="ten_1", supplier_id="sup_1", capture_id="cap_1")
    # then
    assert [s.model_dump(exclude_none=True) for s in splits] == [
        {
            "amount": 125,
            "type": "BalanceAccount",
            "account": "MKT-ten_1",
            "reference": "cap_1-marketplace",
        },
        {
            "amount": 874,
            "type": "BalanceAccount",
            "account": "SUP-sup_1",
            "reference": "cap_1-supplier",
        },
    ]
