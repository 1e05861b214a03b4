"""Test-only event types: a library test needs events that no service publishes ("probe.*"),
and `make_envelope` accepts only a catalogue model for a known type. `probe_type` registers a
name in `common.events.TEST_CATALOGUE` (never in `CATALOGUE`) with the `Probe` payload."""

from __future__ import annotations

from typing import cast

from common.events import CATALOGUE, TEST_CATALOGUE, EventData, EventType


class Probe(EventData):
    """A test event's payload: a number, a label, both optional."""

    n: int | None = None
    label: str | None = None
    aggregate: str | None = None


def probe_type(name: str) -> EventType:
    """`name` as an event type carrying `Probe` (for tests of the broker plumbing only)."""
    if name in CATALOGUE:
        raise ValueError(f"{name} is a real event type")
    TEST_CATALOGUE[name] = Probe
    return cast(EventType, name)
