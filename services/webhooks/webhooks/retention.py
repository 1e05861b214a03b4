"""What webhooks purges (common.retention): stored notifications are also what recognises a PSP's
redelivery, so they are kept at least as long as a PSP retries (NOTIFICATION_MIN_AGE); the
security log past its age; and the shared inbox and outbox rules."""

from __future__ import annotations

from datetime import timedelta

from common.retention import Rule, common_rules

# a PSP retries an unacknowledged notification for up to a month
NOTIFICATION_MIN_AGE = timedelta(days=35)


def rules(keep: timedelta) -> list[Rule]:
    return [
        *common_rules(),
        Rule("notifications", "created_at", keep, floor=NOTIFICATION_MIN_AGE),
        Rule("security_log", "created_at", keep),
    ]
