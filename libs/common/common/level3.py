"""Level 2/3 purchasing-card data (DESIGN §10): its checks and its PSP form, pure and
synchronous. Checkout validates it when a session is created; capture checks it again against
the amount it captures and sends it to the PSP as `enhancedSchemeData.*` additional data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Level3Item:
    commodity_code: str
    description: str
    quantity: Decimal
    unit_of_measure: str
    unit_price: int
    discount: int
    total: int


@dataclass(frozen=True)
class Level3:
    customer_reference: str
    tax_total: int
    freight: int
    duty: int
    items: Sequence[Level3Item]


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    param: str


def check_level3(amount: int, level3: Level3) -> Problem | None:
    """Level 3: each item's total is quantity × unit price − discount, and the items plus tax,
    freight and duty equal the amount (else a capture of that amount is blocked)."""
    if not level3.items:
        return Problem("parameter_missing", "Level 3 data needs at least one item", "level3.items")
    for i, item in enumerate(level3.items):
        expected = item.quantity * item.unit_price - item.discount
        if expected != item.total:
            return Problem(
                "level3_item_total_mismatch",
                f"quantity × unit_price − discount is {expected}, not {item.total}",
                f"level3.items.{i}.total",
            )
    total = sum(i.total for i in level3.items) + level3.tax_total + level3.freight + level3.duty
    if total != amount:
        return Problem(
            "level3_total_mismatch",
            f"items plus tax, freight and duty come to {total}, not {amount}",
            "level3",
        )
    return None


def level3_additional_data(level3: Level3) -> dict[str, str]:
    """Level 2/3 data as the PSP's `enhancedSchemeData.*` additional data."""
    data = {
        "enhancedSchemeData.customerReference": level3.customer_reference,
        "enhancedSchemeData.totalTaxAmount": str(level3.tax_total),
        "enhancedSchemeData.freightAmount": str(level3.freight),
        "enhancedSchemeData.dutyAmount": str(level3.duty),
    }
    for n, item in enumerate(level3.items, start=1):
        prefix = f"enhancedSchemeData.itemDetailLine{n}."
        data.update(
            {
                prefix + "commodityCode": item.commodity_code,
                prefix + "description": item.description,
                prefix + "quantity": format(item.quantity.normalize(), "f"),
                prefix + "unitOfMeasure": item.unit_of_measure,
                prefix + "unitPrice": str(item.unit_price),
                prefix + "discountAmount": str(item.discount),
                prefix + "totalAmount": str(item.total),
            }
        )
    return data
