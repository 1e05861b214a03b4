"""Money: integer minor units plus an ISO 4217 code, and Decimal percentage rates.

Exponents come from the `iso4217` data package. No float ever touches an amount.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any
from xml.etree import ElementTree

from iso4217 import Currency
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

# Largest amount accepted anywhere: fits a PostgreSQL BIGINT with room for sums.
MAX_AMOUNT = 10**15
_HUNDRED = Decimal(100)
_RATE_STEP = Decimal("0.0001")


class UnknownCurrencyError(ValueError):
    pass


@lru_cache(maxsize=1)
def _fund_codes() -> frozenset[str]:
    """Codes the ISO 4217 table marks as funds (USN, BOV, CLF, ...): units of account, not money
    a marketplace moves. The `iso4217` package ships the table but does not expose the flag."""
    table = resources.files("iso4217").joinpath("table.xml").read_bytes()
    root = ElementTree.fromstring(table)  # noqa: S314 - the data package's own file
    return frozenset(
        code.text
        for entry in root.iter("CcyNtry")
        if (name := entry.find("CcyNm")) is not None
        and name.get("IsFund") == "true"
        and (code := entry.find("Ccy")) is not None
        and code.text
    )


@lru_cache(maxsize=512)
def currency_exponent(code: str) -> int:
    """Number of minor-unit digits of an active ISO 4217 currency (EUR 2, JPY 0, KWD 3)."""
    try:
        currency = Currency(code)
    except ValueError:
        raise UnknownCurrencyError(code) from None
    # metals and testing codes have no minor unit; funds are not money we move
    if currency.exponent is None or code in _fund_codes():
        raise UnknownCurrencyError(code)
    return int(currency.exponent)


def is_known_currency(code: str) -> bool:
    try:
        currency_exponent(code)
    except UnknownCurrencyError:
        return False
    return True


def _check_currency(code: str) -> str:
    if not _CURRENCY_SHAPE.match(code) or not is_known_currency(code):
        raise PydanticCustomError(
            "currency_invalid", "{code} is not an active ISO 4217 currency code", {"code": code}
        )
    return code


_CURRENCY_SHAPE = re.compile(r"^[A-Z]{3}$")
CurrencyCode = Annotated[
    str,
    AfterValidator(_check_currency),
    WithJsonSchema({"type": "string", "pattern": _CURRENCY_SHAPE.pattern}),
]
"""An active ISO 4217 code; anything else (`eur`, `XXX`, `XAU`) is `currency_invalid`."""


class Money(BaseModel):
    """An amount in minor units, as the PSP and the API carry it: `{"value", "currency"}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    currency: CurrencyCode

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(value=self.value + other.value, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(value=self.value - other.value, currency=self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} and {other.currency}")

    def to_decimal(self) -> Decimal:
        """The amount in major units, for display only."""
        return Decimal(self.value).scaleb(-currency_exponent(self.currency))


def round_half_up(value: Decimal) -> int:
    """Round to the nearest integer, halves away from zero (the product's rounding)."""
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def percent_of(amount: int, rate: Decimal) -> int:
    """`round_half_up(amount × rate / 100)` in minor units, computed exactly."""
    return round_half_up(Decimal(amount) * rate / _HUNDRED)


def parse_rate(value: Any) -> Decimal:
    """A percentage rate from a JSON value: a string or a number, never via float."""
    if isinstance(value, bool):
        raise PydanticCustomError("rate_invalid", "a rate must be a number")
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, str) and "_" in value:  # Decimal() would read "1_0" as 10
        raise PydanticCustomError("rate_invalid", "a rate must be a decimal number")
    try:
        rate = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise PydanticCustomError("rate_invalid", "a rate must be a decimal number") from None
    if not rate.is_finite() or rate < 0 or rate > _HUNDRED:
        raise PydanticCustomError("rate_invalid", "a rate must be between 0 and 100")
    if rate != rate.quantize(_RATE_STEP):  # exact comparison: "2.50000" passes, "0.00001" not
        raise PydanticCustomError("rate_invalid", "a rate has at most 4 decimal places")
    if rate == 0:
        return Decimal(0)  # also for "-0"
    rate = rate.quantize(_RATE_STEP).normalize()  # at most 7 digits: exact
    # "12.50" → 12.5, and "10" stays 10 (not normalize()'s 1E+1)
    return rate.quantize(Decimal(1)) if rate == rate.to_integral_value() else rate


def _parse_rate_validator(value: Any) -> Decimal:
    return parse_rate(value)


Rate = Annotated[
    Decimal,
    BeforeValidator(_parse_rate_validator),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
"""A percentage between 0 and 100 with at most four decimals, serialised as a string."""
