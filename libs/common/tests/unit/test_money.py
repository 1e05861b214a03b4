"""Money and rates (DESIGN §2 invariant 1, §6): integer minor units, ISO 4217 exponents,
Decimal percentages, round half up."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from common.money import (
    MAX_AMOUNT,
    Money,
    Rate,
    UnknownCurrencyError,
    currency_exponent,
    is_known_currency,
    parse_rate,
    percent_of,
    round_half_up,
)


class Priced(BaseModel):
    rate: Rate


def first_error(exc: pytest.ExceptionInfo[ValidationError]) -> dict:
    return exc.value.errors()[0]


@pytest.mark.parametrize(("code", "exponent"), [("EUR", 2), ("USD", 2), ("JPY", 0), ("KWD", 3)])
def test_exponents_come_from_iso_4217(code, exponent):
    # when / then
    assert currency_exponent(code) == exponent


@pytest.mark.parametrize(
    "code",
    [
        "ZZZ",  # not a code
        "XXX",  # "no currency"
        "XTS",  # testing
        "XAU",  # gold
        "XDR",  # SDR
        "USN",  # a fund (US dollar next day)
        "CLF",  # a fund (Unidad de Fomento)
        "eur",  # not upper case
    ],
)
def test_codes_that_are_not_money_we_move_are_refused(code):
    # when / then
    assert not is_known_currency(code)
    with pytest.raises(UnknownCurrencyError):
        currency_exponent(code)
    with pytest.raises(ValidationError) as exc:
        Money(value=100, currency=code)
    assert first_error(exc)["type"] == "currency_invalid"
    assert first_error(exc)["loc"] == ("currency",)


@pytest.mark.parametrize("code", ["", "EU", "EURO", "€", 978])
def test_malformed_currency_codes_are_refused(code):
    # when / then
    with pytest.raises(ValidationError):
        Money(value=100, currency=code)


@pytest.mark.parametrize(
    ("amount", "rate", "expected"),
    [
        (10000, "2.5", 250),  # DESIGN §6 worked examples
        (10000, "10", 1000),
        (999, "2.5", 25),  # 24.975 → 25
        (999, "12.5", 125),  # 124.875 → 125
        (100, "0.5", 1),  # 0.5 → 1: a half goes up
        (300, "0.5", 2),  # 1.5 → 2
        (10000, "0", 0),
        (10000, "100", 10000),
        (1, "49.9999", 0),
        (1, "50", 1),
    ],
)
def test_percent_of_rounds_half_up(amount, rate, expected):
    # when / then
    assert percent_of(amount, Decimal(rate)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.5", 1), ("1.5", 2), ("2.5", 3), ("-0.5", -1), ("-2.5", -3), ("2.4999", 2), ("-2.4", -2)],
)
def test_halves_round_away_from_zero(value, expected):
    # when / then
    assert round_half_up(Decimal(value)) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2.5", Decimal("2.5")),
        ("12.50", Decimal("12.5")),
        ("2.50000", Decimal("2.5")),  # trailing zeros are not decimals
        (10, Decimal("10")),
        (0, Decimal("0")),
        ("-0", Decimal("0")),
        (2.5, Decimal("2.5")),
        (0.1, Decimal("0.1")),  # via repr: never 0.1000000000000000055511151231257827
        ("99.9999", Decimal("99.9999")),
        ("100", Decimal("100")),
        (Decimal("7.25"), Decimal("7.25")),
    ],
)
def test_rates_parse_exactly(given, expected):
    # when
    rate = parse_rate(given)
    # then
    assert rate == expected
    assert str(rate) == str(expected)  # "10", never "1E+1"


@pytest.mark.parametrize(
    "given",
    ["100.0001", 101, "-0.01", -1, "NaN", "sNaN", "Infinity", float("nan"), float("inf"),
     "0.00001", 1e-05, "12.3456000000000000000000000001", True, False, None, "", "abc", "1_0",
     [], {}],
)  # fmt: skip
def test_invalid_rates_are_refused_with_rate_invalid(given):
    # when
    with pytest.raises(ValidationError) as exc:
        Priced(rate=given)
    # then
    assert first_error(exc)["type"] == "rate_invalid"
    assert first_error(exc)["loc"] == ("rate",)


def test_a_rate_serialises_as_a_string():
    # given
    priced = Priced(rate="12.50")
    # when / then
    assert priced.model_dump(mode="json") == {"rate": "12.5"}
    assert Priced.model_validate_json(priced.model_dump_json()) == priced


@pytest.mark.parametrize("value", [-1, 10.0, 10.5, "10", True, MAX_AMOUNT + 1], ids=repr)
def test_money_accepts_only_integer_minor_units_in_range(value):
    # when / then
    with pytest.raises(ValidationError) as exc:
        Money(value=value, currency="EUR")
    assert first_error(exc)["loc"] == ("value",)


def test_money_from_json_rejects_a_float_amount():
    # when / then
    with pytest.raises(ValidationError):
        Money.model_validate_json('{"value": 10.0, "currency": "EUR"}')
    assert Money.model_validate_json('{"value": 10, "currency": "EUR"}').value == 10


def test_money_adds_and_subtracts_only_the_same_currency():
    # given
    a = Money(value=1000, currency="EUR")
    b = Money(value=250, currency="EUR")
    # when / then
    assert (a + b).value == 1250
    assert (a - b).value == 750
    with pytest.raises(ValueError, match="currency mismatch"):
        a + Money(value=1, currency="USD")
    with pytest.raises(ValidationError):
        b - a  # no negative money


def test_to_decimal_uses_the_currency_exponent():
    # when / then
    assert Money(value=1234, currency="EUR").to_decimal() == Decimal("12.34")
    assert Money(value=1234, currency="JPY").to_decimal() == Decimal("1234")
    assert Money(value=1234, currency="KWD").to_decimal() == Decimal("1.234")


rates = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)


@given(amount=st.integers(min_value=0, max_value=MAX_AMOUNT), rate=rates)
def test_percent_of_stays_within_the_amount(amount, rate):
    # when
    part = percent_of(amount, rate)
    # then
    assert 0 <= part <= amount
    assert abs(Decimal(part) - Decimal(amount) * rate / 100) <= Decimal("0.5")


@given(
    amount=st.integers(min_value=0, max_value=MAX_AMOUNT),
    platform=rates,
    marketplace=rates,
)
def test_a_split_sums_to_the_amount(amount, platform, marketplace):
    # given the split of DESIGN §6
    platform_part = percent_of(amount, platform)
    marketplace_part = percent_of(amount, marketplace)
    # when
    supplier_part = amount - platform_part - marketplace_part
    # then the parts always sum to the amount (validity is checked separately: parts >= 0)
    assert platform_part + marketplace_part + supplier_part == amount


@given(rate=rates)
def test_every_four_decimal_rate_round_trips_through_its_string(rate):
    # when
    parsed = parse_rate(str(rate))
    # then
    assert parsed == rate
    assert parse_rate(format(parsed, "f")) == parsed
