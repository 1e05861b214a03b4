"""What capture purges (common.retention): a capture's history only once the capture is
SUCCEEDED (a FAILED or BLOCKED one may still be retried by an operator), the OMS events past
their age, and the shared inbox and outbox rules."""

from __future__ import annotations

from datetime import timedelta

from common.retention import Rule, common_rules


def rules(keep: timedelta) -> list[Rule]:
    return [
        *common_rules(),
        Rule(
            "capture_history",
            "occurred_at",
            keep,
            guard="EXISTS (SELECT 1 FROM captures c"
            " WHERE c.id = t.capture_id AND c.status = 'SUCCEEDED')",
        ),
        Rule("logistic_order_events", "occurred_at", keep),
    ]
