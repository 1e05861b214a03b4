"""Webhooks' retention rules (common.retention): stored notifications are what recognises a
PSP's redelivery, so a retention shorter than a PSP's retries is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from common.retention import RetentionError
from webhooks.retention import NOTIFICATION_MIN_AGE, rules


def test_webhooks_keeps_notifications_while_a_psp_may_redeliver():
    with pytest.raises(RetentionError, match="notifications"):
        rules(NOTIFICATION_MIN_AGE - timedelta(days=1))
    assert {r.table for r in rules(NOTIFICATION_MIN_AGE)} >= {
        "notifications",
        "security_log",
        "inbox",
    }
