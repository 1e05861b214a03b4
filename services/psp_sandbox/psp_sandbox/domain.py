"""The sandbox's card decisions: pure functions, no I/O.

A card (number, expiry, CVC) and today's date give one `Decision`:

Decision
├── Invalid      the request is rejected (HTTP 422, Adyen `errorCode`), no payment exists
├── Refused      `resultCode: Refused` with Adyen's `refusalReason` / `refusalReasonCode`
├── Challenge    `resultCode: ChallengeShopper` (3DS2); `fails` says how the challenge ends
└── Authorised   `resultCode: Authorised`

The test cards are those of seed 002 plus the sandbox's own 3-D Secure and business cards;
any other Luhn-valid number of a known brand is authorised, as in Adyen's test environment.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date
from typing import Literal

from common import cardholder

Behaviour = Literal["authorise", "refuse", "challenge", "challenge_fails", "cvc_check"]


@dataclass(frozen=True)
class Refusal:
    """Adyen's refusal reason (`refusalReasonCode`, `refusalReason`) plus the issuer's raw
    ISO 8583 answer, as Adyen reports it in `additionalData.refusalReasonRaw`."""

    code: str
    reason: str
    raw: str


REFUSED = Refusal("2", "Refused", "05 : Do not honor")
ACQUIRER_ERROR = Refusal("4", "Acquirer Error", "91 : Issuer or switch inoperative")
LOST_CARD = Refusal("5", "Blocked Card", "41 : Lost card")
STOLEN_CARD = Refusal("5", "Blocked Card", "43 : Stolen card")
EXPIRED_CARD = Refusal("6", "Expired Card", "54 : Expired card")
NOT_AUTHENTICATED = Refusal("11", "3D Not Authenticated", "3D Secure authentication failed")
NOT_ENOUGH_BALANCE = Refusal("12", "Not enough balance", "51 : Insufficient funds")
CVC_DECLINED = Refusal("24", "CVC Declined", "N7 : Decline for CVV2 failure")


@dataclass(frozen=True)
class TestCard:
    number: str
    brand: str  # Adyen's variant name: visa, mc, amex, discover, diners, jcb, cup
    description: str
    behaviour: Behaviour = "authorise"
    refusal: Refusal | None = None
    funding_source: str = "CREDIT"
    commercial: bool = False
    issuing_country: str = "NL"


TEST_CARDS: tuple[TestCard, ...] = (
    TestCard("4242424242424242", "visa", "Visa"),
    TestCard("4000056655665556", "visa", "Visa (debit)", funding_source="DEBIT"),
    TestCard("4111111111111111", "visa", "Visa (Adyen's usual test card)"),
    TestCard("5555555555554444", "mc", "Mastercard"),
    TestCard("2223003122003222", "mc", "Mastercard (2-series)"),
    TestCard("5200828282828210", "mc", "Mastercard (debit)", funding_source="DEBIT"),
    TestCard("5105105105105100", "mc", "Mastercard (prepaid)", funding_source="PREPAID"),
    TestCard("378282246310005", "amex", "American Express"),
    TestCard("371449635398431", "amex", "American Express"),
    TestCard("6011000990139424", "discover", "Discover"),
    TestCard("3056930009020004", "diners", "Diners Club"),
    TestCard("36227206271667", "diners", "Diners Club (14 digits)"),
    TestCard("3566002020360505", "jcb", "JCB"),
    TestCard("6200000000000005", "cup", "UnionPay"),
    TestCard(
        "4000000000004004",
        "visa",
        "Visa Business (commercial / purchasing card)",
        commercial=True,
        issuing_country="US",
    ),
    TestCard("4000000000000101", "visa", "CVC check fails if a CVC is given", "cvc_check"),
    TestCard("4000000000000341", "visa", "Tokenises, payment refused", "refuse", REFUSED),
    TestCard("4000000000000002", "visa", "card_declined", "refuse", REFUSED),
    TestCard("4000000000009995", "visa", "insufficient_funds", "refuse", NOT_ENOUGH_BALANCE),
    TestCard("4000000000009987", "visa", "lost_card", "refuse", LOST_CARD),
    TestCard("4000000000009979", "visa", "stolen_card", "refuse", STOLEN_CARD),
    TestCard("4000000000000069", "visa", "expired_card", "refuse", EXPIRED_CARD),
    TestCard("4000000000000127", "visa", "invalid_cvc", "refuse", CVC_DECLINED),
    TestCard("4000000000000119", "visa", "gateway_error", "refuse", ACQUIRER_ERROR),
    TestCard("4000000000003220", "visa", "3DS2 challenge, authenticated", "challenge"),
    TestCard(
        "4000008400001629",
        "visa",
        "3DS2 challenge that fails",
        "challenge_fails",
        NOT_AUTHENTICATED,
    ),
)
_BY_NUMBER = {card.number: card for card in TEST_CARDS}


@dataclass(frozen=True)
class Card:
    number: str
    expiry_month: str
    expiry_year: str
    cvc: str | None


@dataclass(frozen=True)
class Invalid:
    error_code: str
    message: str


@dataclass(frozen=True)
class Refused:
    card: TestCard
    refusal: Refusal


@dataclass(frozen=True)
class Challenge:
    card: TestCard
    fails: bool


@dataclass(frozen=True)
class Authorised:
    card: TestCard


Decision = Invalid | Refused | Challenge | Authorised


def luhn_valid(digits: str) -> bool:
    return digits.isdigit() and cardholder.luhn_valid(digits)


def brand_of(number: str) -> str | None:
    """The card scheme by IIN range, as Adyen's variant names it."""
    if number.startswith("4"):
        return "visa"
    two, four = int(number[:2]), int(number[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mc"
    if two in (34, 37):
        return "amex"
    if number.startswith(("6011", "65")) or 644 <= int(number[:3]) <= 649:
        return "discover"
    if two in (36, 38) or 300 <= int(number[:3]) <= 305:
        return "diners"
    if two == 35:
        return "jcb"
    if two == 62:
        return "cup"
    return None


def card_expired(month: int, year: int, today: date) -> bool:
    """A card is valid through the last day of its expiry month."""
    return (year, month) < (today.year, today.month)


def decide(card: Card, today: date) -> Decision:
    number = card.number.replace(" ", "")
    if not (12 <= len(number) <= 19) or not luhn_valid(number):
        return Invalid("101", "Invalid card number")
    brand = brand_of(number)
    if brand is None:
        return Invalid("102", "Unable to determine variant")
    if not (card.expiry_month.isdigit() and card.expiry_year.isdigit()):
        return Invalid("129", "Expiry Date Invalid")
    month, year = int(card.expiry_month), int(card.expiry_year)
    if year < 100:
        year += 2000
    if not 1 <= month <= 12:
        return Invalid("129", "Expiry Date Invalid")
    cvc_length = 4 if brand == "amex" else 3
    if card.cvc is not None and (not card.cvc.isdigit() or len(card.cvc) != cvc_length):
        return Invalid("103", "CVC is not the right length")
    test_card = _BY_NUMBER.get(number) or TestCard(number, brand, "any other valid card")
    if card_expired(month, year, today):
        return Refused(test_card, EXPIRED_CARD)
    match test_card.behaviour:
        case "refuse":
            assert test_card.refusal is not None
            return Refused(test_card, test_card.refusal)
        case "cvc_check" if card.cvc is not None:
            return Refused(test_card, CVC_DECLINED)
        case "challenge":
            return Challenge(test_card, fails=False)
        case "challenge_fails":
            return Challenge(test_card, fails=True)
    return Authorised(test_card)


def challenge_outcome(fails: bool, three_ds_result: str) -> Refusal | None:
    """The result of a 3DS2 challenge: None when authenticated, else the refusal.

    `threeDSResult` is base64 JSON carrying `transStatus` ("Y" = authenticated), as the
    drop-in's 3DS2 component hands it over after the challenge."""
    status = decode_three_ds_result(three_ds_result).get("transStatus")
    if fails or status != "Y":
        return NOT_AUTHENTICATED
    return None


def decode_three_ds_result(three_ds_result: str) -> dict[str, object]:
    try:
        padded = three_ds_result + "=" * (-len(three_ds_result) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def encode_three_ds_result(trans_id: str, authenticated: bool) -> str:
    payload = {"transStatus": "Y" if authenticated else "N", "threeDSServerTransID": trans_id}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def last_four(number: str) -> str:
    return number[-4:]


@dataclass(frozen=True)
class Balance:
    authorised: int
    captured: int
    refunded: int
    cancelled: bool


def capture_allowed(balance: Balance, amount: int) -> bool:
    return not balance.cancelled and 0 < amount <= balance.authorised - balance.captured


def refund_allowed(balance: Balance, amount: int) -> bool:
    return 0 < amount <= balance.captured - balance.refunded


def cancel_allowed(balance: Balance) -> bool:
    return not balance.cancelled and balance.captured == 0


def split_problem(amount: int, currency: str, splits: object) -> str | None:
    """What is wrong with a request's split instructions, if anything. As Adyen does, the
    lines (each with a type and a non-negative amount in the request's currency) must sum to
    exactly the amount of the payment or modification."""
    if not isinstance(splits, list) or not splits:
        return "splits must be a non-empty list"
    total = 0
    for n, split in enumerate(splits):
        amount_of = split.get("amount") if isinstance(split, dict) else None
        if not isinstance(split, dict) or not isinstance(amount_of, dict):
            return f"splits.{n} needs an amount"
        value = amount_of.get("value")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"splits.{n}.amount.value must be a non-negative integer"
        if amount_of.get("currency", currency) != currency:
            return f"splits.{n}.amount.currency must be {currency}"
        if not split.get("type"):
            return f"splits.{n}.type is required"
        total += value
    if total != amount:
        return f"the split amounts sum to {total}, not to the amount {amount}"
    return None
