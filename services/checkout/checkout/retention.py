"""What checkout purges (common.retention): a payment's timeline only once the payment is final
(refused, cancelled, in error or fully refunded: no capture, refund or chargeback can follow),
and the shared inbox and outbox rules."""

from __future__ import annotations

from datetime import timedelta

from checkout.domain import FINAL
from common.retention import Rule, common_rules


def rules(keep: timedelta) -> list[Rule]:
    final = ", ".join(f"'{status.value}'" for status in sorted(FINAL))
    return [
        *common_rules(),
        Rule(
            "payment_timeline",
            "occurred_at",
            keep,
            guard=f"EXISTS (SELECT 1 FROM payments p WHERE p.id = t.payment_id"
            f" AND p.status IN ({final}))",
        ),
    ]
