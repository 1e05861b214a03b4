"""Prometheus collectors of one service, in that service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "http_requests", "HTTP requests served", ["method", "route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=r,
        )
        self.outbox_published = Counter(
            "outbox_published", "Outbox events confirmed by the broker", registry=r
        )
        self.outbox_publish_failures = Counter(
            "outbox_publish_failures", "Outbox batches that failed to publish", registry=r
        )
        self.outbox_pending = Gauge(
            "outbox_pending", "Unpublished outbox rows seen by the relay's last pass", registry=r
        )
        self.consumer_messages = Counter(
            "consumer_messages",
            "Messages handled by inbox consumers",
            ["queue", "outcome"],
            registry=r,
        )
        self.consumer_duration = Histogram(
            "consumer_handle_duration_seconds", "Handler time per message", ["queue"], registry=r
        )
        self.security_events = Counter(
            "security_events", "Refused credentials and signatures", ["kind"], registry=r
        )
