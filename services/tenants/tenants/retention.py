"""What tenants purges (common.retention): the shared inbox and outbox rules; its own tables are
the tenants' current state and their commission history, which is kept."""

from __future__ import annotations

from datetime import timedelta

from common.retention import Rule, common_rules


def rules(keep: timedelta) -> list[Rule]:
    del keep
    return common_rules()
