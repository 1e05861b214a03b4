"""The payouts service's own Prometheus collectors."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from payouts.ledger import CheckResult


class PayoutsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ledger_check = Gauge(
            "ledger_check_problems",
            "What the last ledger check found, by kind (all 0 when the books are right)",
            ["kind"],
            registry=registry,
        )
        self.ledger_check_ok = Gauge(
            "ledger_check_ok", "1 when the last ledger check found nothing wrong", registry=registry
        )

    def record_check(self, result: CheckResult) -> None:
        for kind in (
            "unbalanced_transactions",
            "nonzero_tenant_currencies",
            "balance_mismatches",
            "held_mismatches",
            "conflicts",
        ):
            self.ledger_check.labels(kind).set(getattr(result, kind))
        self.ledger_check_ok.set(1 if result.ok else 0)
