"""The sandbox's in-memory state: merchant accounts, payments, modifications, idempotency
records, card tokens and the log of requests and webhook deliveries tests inspect."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from psp_sandbox.domain import Balance, Refusal, TestCard

_PSP_ALPHABET = string.ascii_uppercase + string.digits


class Faults(BaseModel):
    """Fault injection, per merchant account. Counters (`*_next`) are consumed per request."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=120_000)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # share of Checkout calls → 500
    fail_next: int = Field(default=0, ge=0)  # the next N Checkout calls answer 500
    timeout: bool = False  # every Checkout call hangs (see hang_ms)
    timeout_next: int = Field(default=0, ge=0)  # the next N Checkout calls hang
    hang_ms: int = Field(default=30_000, ge=0, le=600_000)
    duplicate_webhooks: bool = False
    webhook_delay_ms: int = Field(default=0, ge=0, le=600_000)
    reorder_webhooks: bool = False  # deliver each pair of notifications in reverse order
    fail_captures: bool = False  # captures end in CAPTURE_FAILED
    fail_refunds: bool = False  # refunds end in REFUND_FAILED
    # the confirmation webhook of a modification (CAPTURE, REFUND, ...) is never sent: the
    # PSP took it and stays silent (every one, or the next N)
    drop_webhooks: bool = False
    drop_next_webhooks: int = Field(default=0, ge=0)


@dataclass
class MerchantAccount:
    code: str
    api_key: str
    hmac_key: str
    webhook_url: str | None
    faults: Faults = field(default_factory=Faults)


@dataclass
class Modification:
    kind: Literal["capture", "refund", "cancel", "chargeback"]
    psp_reference: str
    reference: str | None
    amount: dict[str, Any] | None
    splits: list[dict[str, Any]] | None
    idempotency_key: str | None
    success: bool
    event_code: str
    reason: str
    created_at: str
    additional_data: dict[str, Any] | None = None
    webhook_dropped: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "webhookDropped": self.webhook_dropped,
            "kind": self.kind,
            "pspReference": self.psp_reference,
            "reference": self.reference,
            "amount": self.amount,
            "splits": self.splits,
            "idempotencyKey": self.idempotency_key,
            "success": self.success,
            "eventCode": self.event_code,
            "reason": self.reason,
            "createdAt": self.created_at,
            "additionalData": self.additional_data,
        }


@dataclass
class Payment:
    psp_reference: str
    merchant_account: str
    reference: str
    amount: dict[str, Any]
    card: TestCard
    expiry: str
    result_code: str
    request: dict[str, Any]  # what the sandbox received, card fields removed
    idempotency_key: str | None
    refusal: Refusal | None = None
    challenge_trans_id: str | None = None
    challenge_fails: bool = False
    details_idempotency_keys: list[str | None] = field(default_factory=list)
    modifications: list[Modification] = field(default_factory=list)
    created_at: str = ""

    @property
    def authorised(self) -> bool:
        return self.result_code == "Authorised"

    def balance(self) -> Balance:
        def total(kind: str) -> int:
            return sum(
                int((m.amount or {}).get("value", 0))
                for m in self.modifications
                if m.kind == kind and m.success
            )

        return Balance(
            authorised=int(self.amount["value"]) if self.authorised else 0,
            captured=total("capture"),
            refunded=total("refund"),
            cancelled=any(m.kind == "cancel" and m.success for m in self.modifications),
        )

    def public(self) -> dict[str, Any]:
        balance = self.balance()
        return {
            "pspReference": self.psp_reference,
            "merchantAccount": self.merchant_account,
            "merchantReference": self.reference,
            "amount": self.amount,
            "resultCode": self.result_code,
            "refusalReason": self.refusal.reason if self.refusal else None,
            "brand": self.card.brand,
            "cardSummary": self.card.number[-4:],
            "splits": self.request.get("splits"),
            "additionalData": self.request.get("additionalData"),
            "request": self.request,
            "idempotencyKey": self.idempotency_key,
            "detailsIdempotencyKeys": self.details_idempotency_keys,
            "captured": balance.captured,
            "refunded": balance.refunded,
            "cancelled": balance.cancelled,
            "modifications": [m.public() for m in self.modifications],
            "createdAt": self.created_at,
        }


@dataclass
class IdempotencyRecord:
    fingerprint: str
    done: asyncio.Event
    status: int = 0
    body: dict[str, Any] | None = None


@dataclass
class Store:
    accounts: dict[str, MerchantAccount] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    challenges: dict[str, str] = field(default_factory=dict)  # 3DS trans id → pspReference
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token → value, expiry
    requests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    webhook_attempts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _references: set[str] = field(default_factory=set)

    def new_psp_reference(self) -> str:
        while True:
            ref = "".join(secrets.choice(_PSP_ALPHABET) for _ in range(16))
            if ref not in self._references:
                self._references.add(ref)
                return ref

    def account_by_key(self, api_key: str) -> MerchantAccount | None:
        for account in self.accounts.values():
            if secrets.compare_digest(account.api_key, api_key):
                return account
        return None

    def upsert_account(
        self, code: str, webhook_url: str | None, hmac_key: str | None = None
    ) -> MerchantAccount:
        account = self.accounts.get(code)
        if account is None:
            account = MerchantAccount(
                code=code,
                api_key="sbx_key_" + secrets.token_urlsafe(24),
                hmac_key=(hmac_key or secrets.token_hex(32)).upper(),
                webhook_url=webhook_url,
            )
            self.accounts[code] = account
            return account
        if webhook_url is not None:
            account.webhook_url = webhook_url
        if hmac_key is not None:
            account.hmac_key = hmac_key.upper()
        return account

    def tokenize(self, value: str, ttl_s: int) -> str:
        token = "sbx_tok_" + secrets.token_urlsafe(18)
        self.tokens[token] = (value, time.monotonic() + ttl_s)
        return token

    def detokenize(self, token: str) -> str | None:
        entry = self.tokens.get(token)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def log_request(self, account: str, entry: dict[str, Any]) -> None:
        entry["at"] = now_iso()
        self.requests.setdefault(account, []).append(entry)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


# --- the payout provider (seed 003) ------------------------------------------------------


@dataclass
class PayoutFaults:
    fail_attempts: int = 0
    max_attempts: int = 3
    lose_callback: bool = False
    create_delay_s: float = 0.0
    create_5xx: int = 0
    attempt_delay_s: float = 0.05


@dataclass
class PayoutOrder:
    order_id: str
    amount: int
    currency: str
    iban: str
    name: str
    callback_url: str | None
    faults: PayoutFaults
    status: str = "FULFILLMENTS_SCHEDULED"
    fulfillments: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def view(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "type": "FULFILL_ONLY",
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "fulfillments": self.fulfillments,
            "createdAt": self.created_at,
        }


@dataclass
class PayoutProviderState:
    api_key: str | None
    faults: PayoutFaults = field(default_factory=PayoutFaults)
    orders: dict[str, PayoutOrder] = field(default_factory=dict)
    create_requests: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    http: aiohttp.ClientSession | None = None
