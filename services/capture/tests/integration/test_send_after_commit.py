"""A SHIPPED's capture is leased in the statement that creates it and sent by the same replica
right after the commit, without an executor's claim; if that replica dies between the commit
and the PSP call, the lease expires and a claim sends it, once, under the same key."""

from datetime import timedelta

from capture.app import EXECUTOR
from common.testing.waiting import eventually


async def test_a_shipped_capture_is_sent_after_the_commit_without_a_claim(capture, monkeypatch):
    # given a tenant capturing on shipment, and an executor whose claims are counted
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [10000])
    executor = capture.main.app[EXECUTOR]
    claimed: list[str] = []
    real_claim = executor._claim

    async def counting_claim(limit):
        claims = await real_claim(limit)
        claimed.extend(c.capture_id for c in claims)
        return claims

    monkeypatch.setattr(executor, "_claim", counting_claim)

    # when the line ships
    await capture.ship(tenant, payment)

    # then the capture is sent and captured, and no claim ever took it
    [done] = await capture.until_captured(tenant, payment)
    [psp] = await capture.psp_captures(payment)
    assert psp["idempotencyKey"] == f"capture:{done['id']}:1"
    assert claimed == []
    async with capture.main.pool.acquire() as conn:
        attempts = await conn.fetch(
            "SELECT attempt, outcome FROM capture_attempts WHERE capture_id = $1", done["id"]
        )
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "received")]


async def test_a_replica_that_dies_between_the_commit_and_the_psp_call_leaves_a_capture_sent_once(
    capture, clock, monkeypatch
):
    # given a replica whose sends after the commit never happen (it dies right after commit)
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [10000])
    executor = capture.main.app[EXECUTOR]
    lost: list[str] = []
    monkeypatch.setattr(executor, "send", lambda claim: lost.append(claim.capture_id))

    # when the line ships
    await capture.ship(tenant, payment)
    await eventually(lambda: _true(len(lost) == 1))
    [pending] = await capture.captures(tenant, payment)
    assert pending["status"] == "PENDING"
    assert await capture.psp_captures(payment) == []

    # then once its lease has expired, a claim sends it, under the capture's one key
    clock.advance(timedelta(seconds=10))
    [done] = await capture.until_captured(tenant, payment)
    assert done["id"] == lost[0]
    await capture.sandbox.drain_webhooks()
    [psp] = await capture.psp_captures(payment)
    assert psp["idempotencyKey"] == f"capture:{done['id']}:1"
    async with capture.main.pool.acquire() as conn:
        attempts = await conn.fetch(
            "SELECT attempt, outcome FROM capture_attempts WHERE capture_id = $1 ORDER BY attempt",
            done["id"],
        )
    # the first attempt's call never happened (its outcome stays unknown), the second's did
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, None), (2, "received")]
    [succeeded] = await capture.events("capture.succeeded", payment)
    assert succeeded["capture_id"] == done["id"]


async def _true(value: bool) -> bool:
    return value
