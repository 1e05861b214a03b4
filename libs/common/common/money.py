"""Money: integer minor units plus an ISO 4217 code, and Decimal percentage rates.

Exponents come from the `iso4217` data package. No float ever touches an amount.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any

from iso4217 import Currency
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
)
from pydantic_core import PydanticCustomError

# Largest amount accepted anywhere: fits a PostgreSQL BIGINT with room for sums.
MAX_AMOUNT = 10**15
_HUNDRED = Decimal(100)


class UnknownCurrencyError(ValueError):
    pass


@lru_cache(maxsize=512)
def currency_exponent(code: str) -> int:
    """Number of minor-unit digits of an active ISO 4217 currency (EUR 2, JPY 0, KWD 3)."""
    try:
        currency = Currency(code)
    except ValueError:
        raise UnknownCurrencyError(code) from None
    if currency.exponent is None:  # funds, metals, testing codes: not money we move
        raise UnknownCurrencyError(code)
    return int(currency.exponent)


def is_known_currency(code: str) -> bool:
    try:
        currency_exponent(code)
    except UnknownCurrencyError:
        return False
    return True


def _check_currency(code: str) -> str:
    if not is_known_currency(code):
        raise PydanticCustomError(
            "currency_invalid", "{code} is not an active ISO 4217 currency code", {"code": code}
        )
    return code


CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$"), AfterValidator(_check_currency)]


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
    try:
        rate = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise PydanticCustomError("rate_invalid", "a rate must be a decimal number") from None
    if not rate.is_finite() or rate < 0 or rate > _HUNDRED:
        raise PydanticCustomError("rate_invalid", "a rate must be between 0 and 100")
    if rate.as_tuple().exponent < -4:  # type: ignore[operator]
        raise PydanticCustomError("rate_invalid", "a rate has at most 4 decimal places")
    return rate.normalize() if rate != 0 else Decimal(0)


def _parse_rate_validator(value: Any) -> Decimal:
    return parse_rate(value)


Rate = Annotated[
    Decimal,
    BeforeValidator(_parse_rate_validator),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
"""A percentage between 0 and 100 with at most four decimals, serialised as a string."""
