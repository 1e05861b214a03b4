"""The capture benchmark's verdict on a phase: sustained only if every event is PAID within
the grace after the last publish and the backlog does not grow."""

from bench.capture_shipment import SUSTAINED_GRACE_S, Phase


def phase(latencies_ms: list[float], drained_s: float) -> Phase:
    published = {f"pay_{n}": float(n) for n in range(len(latencies_ms))}
    return Phase(
        "probe",
        200,
        published,
        [],
        sorted(latencies_ms),
        latencies_ms,
        len(latencies_ms),
        200.0,
        {},
        1.0,
        (0.5, 0.0),
        drained_s,
    )


def test_a_phase_paid_at_its_pace_is_sustained() -> None:
    assert phase([20.0] * 100, drained_s=0.1).sustained


def test_a_phase_whose_last_events_are_paid_long_after_the_last_publish_is_not() -> None:
    # latencies high from the start (a backlog it began with), so they don't double, but
    # the last PAID came 12 s after the last publish
    late = phase([6000.0 + 60 * n for n in range(100)], drained_s=12.0)
    assert not late.growing
    assert not late.sustained
    assert not phase([20.0] * 100, drained_s=SUSTAINED_GRACE_S + 0.1).sustained


def test_a_phase_whose_backlog_grows_is_not() -> None:
    assert not phase([10.0 * n for n in range(100)], drained_s=1.0).sustained
