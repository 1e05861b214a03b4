"""The capture service's own Prometheus collectors, in the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class CaptureMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.transitions = Counter(
            "capture_transitions",
            "Captures reaching a status",
            ["status"],
            registry=registry,
        )
        self.psp_calls = Counter(
            "capture_psp_calls",
            "Capture requests sent to the PSP, by answer",
            ["outcome"],
            registry=registry,
        )
        self.psp_duration = Histogram(
            "capture_psp_call_seconds", "PSP capture call latency", registry=registry
        )
        self.oms_events = Counter(
            "capture_oms_events",
            "OMS logistic-order events, by what they did",
            ["outcome", "reason"],
            registry=registry,
        )
        self.unmatched_notifications = Counter(
            "capture_unmatched_notifications",
            "CAPTURE / CAPTURE_FAILED notifications about no capture of ours",
            registry=registry,
        )
        self.anomalies = Counter(
            "capture_anomalies",
            "Notifications contradicting a capture's state (a second CAPTURE, a failure after"
            " success, an amount that differs)",
            registry=registry,
        )
