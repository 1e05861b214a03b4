"""Where capture reads the time, and where its new ids come from."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from capture.shipment_domain import Ids

Clock = Callable[[], datetime]
"""Where the capture service reads the time (tests move it: DELAYED captures)."""


def new_capture_id() -> str:
    return f"cap_{secrets.token_hex(12)}"


def new_intervention_id() -> str:
    return f"int_{secrets.token_hex(12)}"


RANDOM_IDS = Ids(capture=new_capture_id, intervention=new_intervention_id)
