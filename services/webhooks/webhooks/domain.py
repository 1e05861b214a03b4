"""Webhook decisions, pure and synchronous: what a valid Adyen notification batch is, how an
item is normalised, and when an item's signed string would be ambiguous.

The signed string joins eight fields with `:` and does not escape them, so a `:` inside a
field could move to a neighbour and keep the signature valid for other values. Only
`merchantReference` may hold a `:` (ours never do, but the PSP allows it): with every other
signed field free of `:`, the string splits back into the fields in exactly one way.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from common.cardholder import redact_card_numbers
from common.events import PspNotificationReceived
from common.money import Money
from common.psp.hmac import verify_signature

COLON_FREE_FIELDS = (
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "eventCode",
    "success",
)
MAX_ITEMS = 100
MAX_TEXT = 500


class MalformedNotification(ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class Item:
    """One NotificationRequestItem, checked and normalised; `raw` is as received."""

    raw: Mapping[str, Any]
    merchant_account: str
    event_code: str
    success: bool
    psp_reference: str
    original_reference: str | None
    merchant_reference: str
    amount_value: int | None
    currency: str | None
    reason: str | None
    event_date: str | None
    payment_method: str | None


def parse_batch(payload: object) -> list[Item]:
    """The items of an Adyen standard notification, or `MalformedNotification`."""
    if not isinstance(payload, dict):
        raise MalformedNotification("the body must be a JSON object")
    entries = payload.get("notificationItems")
    if not isinstance(entries, list) or not entries:
        raise MalformedNotification(
            "notificationItems must be a non-empty list", "notificationItems"
        )
    if len(entries) > MAX_ITEMS:
        raise MalformedNotification(f"at most {MAX_ITEMS} items per batch", "notificationItems")
    items = []
    for index, entry in enumerate(entries):
        where = f"notificationItems.{index}.NotificationRequestItem"
        raw = entry.get("NotificationRequestItem") if isinstance(entry, dict) else None
        if not isinstance(raw, dict):
            raise MalformedNotification("each entry holds a NotificationRequestItem", where)
        items.append(parse_item(raw, where))
    return items


def _text(raw: Mapping[str, Any], name: str, where: str, *, required: bool) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        if required:
            raise MalformedNotification(f"{name} is required", f"{where}.{name}")
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or not _storable(value):
        raise MalformedNotification(
            f"{name} must be a string of at most {MAX_TEXT} characters", f"{where}.{name}"
        )
    return value


def _required(raw: Mapping[str, Any], name: str, where: str) -> str:
    value = _text(raw, name, where, required=True)
    if value is None:  # pragma: no cover - _text raises for a required field
        raise MalformedNotification(f"{name} is required", f"{where}.{name}")
    return value


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_item(raw: Mapping[str, Any], where: str = "item") -> Item:
    for name in COLON_FREE_FIELDS:
        value = raw.get(name)
        if isinstance(value, str) and ":" in value:
            raise MalformedNotification(f"{name} may not contain ':'", f"{where}.{name}")
    success = raw.get("success")
    if success not in ("true", "false"):
        raise MalformedNotification('success is "true" or "false"', f"{where}.success")
    amount_value: int | None = None
    currency: str | None = None
    amount = raw.get("amount")
    if amount is not None:
        value = amount.get("value") if isinstance(amount, dict) else None
        cur = amount.get("currency") if isinstance(amount, dict) else None
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not 0 <= value < 10**15
            or not isinstance(cur, str)
            or len(cur) != 3
            or not cur.isalpha()
            or not cur.isupper()
        ):
            raise MalformedNotification(
                "amount is {value: minor units, currency: ISO 4217}", f"{where}.amount"
            )
        amount_value, currency = value, cur
    additional = raw.get("additionalData")
    if additional is not None and not isinstance(additional, dict):
        raise MalformedNotification("additionalData must be an object", f"{where}.additionalData")
    return Item(
        raw=raw,
        merchant_account=_required(raw, "merchantAccountCode", where),
        event_code=_required(raw, "eventCode", where),
        success=success == "true",
        psp_reference=_required(raw, "pspReference", where),
        original_reference=_text(raw, "originalReference", where, required=False),
        merchant_reference=_required(raw, "merchantReference", where),
        amount_value=amount_value,
        currency=currency,
        reason=_text(raw, "reason", where, required=False),
        event_date=_text(raw, "eventDate", where, required=False),
        payment_method=_text(raw, "paymentMethod", where, required=False),
    )


# An AUTHORISATION's reason is "authCode:cardSummary:expiry" (e.g. "874574:1111:3/2030"), and
# additionalData may carry the expiry or the holder's name: cardholder data, which Marketpay
# never stores (DESIGN §2, invariant 7). None of it is signed, so it is removed once verified.
_AUTHORISATION_REASON = re.compile(r"^(?P<kept>[^:]*:\d{4}):\d{1,2}/\d{2,4}$")
CARDHOLDER_FIELDS = frozenset(
    {"expiryDate", "expiryMonth", "expiryYear", "cardHolderName", "cardNumber", "cvc"}
)


def without_cardholder_data(item: Item) -> Item:
    """`item` with the card's expiry, holder name and anything shaped like a card number
    removed from the fields no signature covers (`reason`, `additionalData`)."""
    raw = dict(item.raw)
    reason = item.reason
    if reason is not None:
        reason = redact_card_numbers(_AUTHORISATION_REASON.sub(r"\g<kept>", reason))
        raw["reason"] = reason
    additional = raw.get("additionalData")
    if isinstance(additional, dict):
        raw["additionalData"] = {
            key: redact_card_numbers(value) if isinstance(value, str) else value
            for key, value in additional.items()
            if key not in CARDHOLDER_FIELDS
        }
    return replace(item, raw=raw, reason=reason)


def event_data(item: Item, *, notification_id: str, psp: str) -> PspNotificationReceived:
    """The `psp.notification.received` payload of a stored item."""
    amount = (
        Money(value=item.amount_value, currency=item.currency)
        if item.amount_value is not None and item.currency is not None
        else None
    )
    return PspNotificationReceived(
        notification_id=notification_id,
        psp=psp,
        merchant_account=item.merchant_account,
        event_code=item.event_code,
        success=item.success,
        psp_reference=item.psp_reference,
        original_reference=item.original_reference,
        merchant_reference=item.merchant_reference,
        amount=amount,
        reason=item.reason,
        event_date=item.event_date,
        payment_method=item.payment_method,
    )


def is_hex_key(key: str) -> bool:
    """An Adyen HMAC key: 64 hex digits (32 bytes)."""
    return len(key) == 64 and all(c in "0123456789abcdefABCDEF" for c in key)


# --- HMAC keys ----------------------------------------------------------------------------------

MAX_ACTIVE_KEYS = 2


@dataclass(frozen=True)
class HmacKeyState:
    """A merchant account's HMAC key as stored: sealed (`nonce`, `ciphertext`, under the
    encryption key `encryption_key_id`), never in clear."""

    id: str
    tenant_id: str
    merchant_account: str
    nonce: bytes
    ciphertext: bytes
    encryption_key_id: str
    created_at: datetime
    revoked_at: datetime | None


class KeyRefused(Exception):
    """A key that may not be added: `merchant_account_not_yours` or `hmac_key_limit`."""

    def __init__(self, code: Literal["merchant_account_not_yours", "hmac_key_limit"]) -> None:
        super().__init__(code)
        self.code = code


def decide_key_put(
    *,
    tenant_merchant_account: str | None,
    merchant_account: str,
    key: str,
    active: Sequence[tuple[HmacKeyState, str]],
) -> HmacKeyState | None:
    """Putting `key` (lower-case hex) on `merchant_account`, whose active keys are `active`
    (each with its opened key): the active key it already is (putting it again changes
    nothing), or None to add it. The merchant account must be the tenant's; at most
    `MAX_ACTIVE_KEYS` are active at once, so rotating is add the new, then revoke the old."""
    if tenant_merchant_account is None or tenant_merchant_account != merchant_account:
        raise KeyRefused("merchant_account_not_yours")
    for stored, opened in active:
        if hmac.compare_digest(opened, key):
            return stored
    if len(active) >= MAX_ACTIVE_KEYS:
        raise KeyRefused("hmac_key_limit")
    return None


# --- acceptance and dedupe of notifications -----------------------------------------------------

Refusal = Literal["merchant_account_unknown", "hmac_signature_invalid", "hmac_signature_missing"]
Outcome = Literal["stored", "duplicate", "anomaly"]


def refusal(item: Item, hmac_keys: Sequence[str] | None) -> Refusal | None:
    """Why an item is refused (its merchant account has no tenant: `hmac_keys` is None; or its
    signature matches none of the account's active keys), or None: accepted."""
    if hmac_keys is None:
        return "merchant_account_unknown"
    if verify_signature(item.raw, hmac_keys):
        return None
    additional = item.raw.get("additionalData") or {}
    return "hmac_signature_invalid" if additional.get("hmacSignature") else "hmac_signature_missing"


@dataclass(frozen=True)
class StoredOriginal:
    """The stored notification a duplicate has the dedupe key of."""

    id: str
    tenant_id: str
    psp_reference: str
    amount: int | None
    currency: str | None


@dataclass(frozen=True)
class Anomaly:
    original: StoredOriginal
    kind: Literal["amount_mismatch"]
    item: Item


@dataclass(frozen=True)
class Dedupe:
    outcomes: list[Outcome]
    anomalies: list[Anomaly]


def dedupe(
    batch: Sequence[tuple[str, Item]],
    fresh: Set[str],
    originals: Mapping[str, StoredOriginal],
) -> Dedupe:
    """The outcome of each `(notification id, item)` of a stored batch: `stored` when it was
    new (`fresh`), else a duplicate of its stored original (`originals`, by notification id),
    which is an `anomaly` (recorded, never applied) when the amounts differ."""
    outcomes: list[Outcome] = []
    anomalies: list[Anomaly] = []
    for notification_id, item in batch:
        if notification_id in fresh:
            outcomes.append("stored")
            continue
        original = originals[notification_id]
        if (original.amount, original.currency) != (item.amount_value, item.currency):
            outcomes.append("anomaly")
            anomalies.append(Anomaly(original, "amount_mismatch", item))
        else:
            outcomes.append("duplicate")
    return Dedupe(outcomes, anomalies)


# --- stored notifications and their replay ------------------------------------------------------


@dataclass(frozen=True)
class StoredNotification:
    """A stored notification as replay needs it: the item as stored (cardholder data removed)."""

    id: str
    tenant_id: str
    psp: str
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class NotificationView:
    """A stored notification, or (`accepted` false) a refused delivery, as listed."""

    id: str
    accepted: bool
    psp: str
    merchant_account: str | None
    event_code: str | None
    success: bool | None
    psp_reference: str | None
    original_reference: str | None
    merchant_reference: str | None
    amount: int | None
    currency: str | None
    refusal_reason: str | None
    created_at: datetime
    raw: Mapping[str, Any] | None


class ReplayRefused(Exception):
    def __init__(self, code: Literal["notification_not_found", "replay_range_too_large"]) -> None:
        super().__init__(code)
        self.code = code


def replay_selection(
    found: Sequence[StoredNotification], *, wanted: Sequence[str] | None, limit: int
) -> list[StoredNotification]:
    """What a replay publishes again: by id, every wanted id must be stored (another tenant's
    reads as absent); by range, at most `limit` (`found` holds up to `limit + 1`)."""
    if wanted is not None and len(found) != len(set(wanted)):
        raise ReplayRefused("notification_not_found")
    if wanted is None and len(found) > limit:
        raise ReplayRefused("replay_range_too_large")
    return list(found)


def replay_events(
    notifications: Sequence[StoredNotification],
) -> list[tuple[PspNotificationReceived, str]]:
    """The `psp.notification.received` event of each notification again (same payload), with
    the aggregate it is ordered by (its merchant reference), in the given order."""
    events = []
    for notification in notifications:
        item = parse_item(notification.raw)
        events.append(
            (
                event_data(item, notification_id=notification.id, psp=notification.psp),
                item.merchant_reference,
            )
        )
    return events
