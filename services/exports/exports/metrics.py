"""The exports service's own Prometheus collectors, in the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ExportMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "exports_attempts",
            "Export attempts by how they ended (ready, failed, lease_lost, superseded)",
            ["type", "outcome"],
            registry=registry,
        )
        self.rows = Counter(
            "exports_rows", "Rows written to completed export files", ["type"], registry=registry
        )
        self.duration = Histogram(
            "exports_attempt_seconds",
            "Time from claim to completion of an export attempt that completed",
            ["type"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=registry,
        )
        self.expired = Counter(
            "exports_expired", "Exports expired and their files deleted", registry=registry
        )
