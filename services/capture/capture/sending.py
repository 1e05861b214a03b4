"""Sending captures to the PSP, in three steps: `claim` leases due captures (one statement),
`send` calls the PSP outside any transaction under the capture's deterministic key, and
`record_answers` writes a batch of answers: load (the captures, locked, in id order) →
decide (`domain.on_psp_answer`, `domain.decide_change`) → save (one pipelined round trip for
the changes, one for their events).

A replica that dies after the PSP call leaves a lease that expires; the next claim sends the
same key again, which the PSP answers with its first answer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from capture.clock import RANDOM_IDS
from capture.creation import observe
from capture.domain import (
    CaptureChange,
    Claim,
    PspAnswer,
    Received,
    Refused,
    Unknown,
    attempt_of,
    decide_change,
    on_psp_answer,
    psp_capture_request,
)
from capture.metrics import CaptureMetrics
from capture.repo import PgRepo
from capture.shipment_domain import Ids
from common.logging import get_logger
from common.psp.port import PspAuthenticationError, PspError, PspPort, PspValidationError

log = get_logger("capture.service")


async def claim(repo: PgRepo, *, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    """Lease due captures for this replica (one statement, its own transaction)."""
    return [
        Claim(
            capture_id=capture.id,
            tenant_id=capture.tenant_id,
            attempt=capture.attempts,
            generation=capture.generation,
            lease_token=token,
            request=psp_capture_request(capture),
        )
        for capture, token in await repo.claim_due(now=now, lease_until=now + lease, limit=limit)
    ]


async def send(psp: PspPort, claim: Claim) -> PspAnswer:
    """The PSP call, outside any transaction. A refusal (4xx) is definitive; anything else
    that is not an answer (timeout, 5xx, a request with this key still in progress at the
    PSP, an unexpected answer) leaves the outcome unknown: retried under the same key."""
    try:
        result = await psp.capture(claim.request, idempotency_key=claim.idempotency_key)
    except (PspValidationError, PspAuthenticationError) as exc:
        return Refused(exc.code, exc.message)
    except PspError as exc:
        return Unknown(exc.code, exc.message)
    except Exception as exc:  # a bug or a transport surprise: never lose the capture
        log.exception("unexpected error calling the PSP", capture_id=claim.capture_id)
        return Unknown("psp_call_error", f"{type(exc).__name__}: {exc}")
    return Received(result.psp_reference)


async def record_answers(
    repo: PgRepo,
    answers: Sequence[tuple[Claim, PspAnswer]],
    *,
    now: datetime,
    retry_delays: Sequence[timedelta],
    metrics: CaptureMetrics | None = None,
    ids: Ids = RANDOM_IDS,
    skip_busy: bool = False,
) -> list[tuple[Claim, PspAnswer]]:
    """Record a batch of PSP answers in the caller's transaction. With `skip_busy`, the
    answers whose capture another transaction holds (a notification about it being applied)
    are not recorded but returned, to record in the next batch: a batch that waited for those
    locks while that transaction waited for one of the batch's could deadlock (PostgreSQL
    breaks a deadlock only after `deadlock_timeout`, a second)."""
    ordered = sorted(answers, key=lambda item: item[0].capture_id)  # a fixed lock order
    captures = await repo.lock_captures([c.capture_id for c, _ in ordered], skip_locked=skip_busy)
    changes: list[CaptureChange] = []
    busy: list[tuple[Claim, PspAnswer]] = []
    for claim_, answer in ordered:
        capture = captures.get(claim_.capture_id)
        if capture is None:
            if skip_busy:
                busy.append((claim_, answer))
            continue
        change = decide_change(
            capture,
            on_psp_answer(
                capture.state, answer, generation=claim_.generation, retry_delays=retry_delays
            ),
            source="psp_answer",
            now=now,
            new_intervention_id=ids.intervention(),
            detail={"attempt": claim_.attempt, "idempotency_key": claim_.idempotency_key},
            attempt=attempt_of(claim_, answer, now),
        )
        captures[capture.id] = change.capture  # a second answer in the batch sees this one
        changes.append(change)
    await repo.save_changes(changes)
    for change in changes:
        observe(change, metrics)
    return busy
