"""Structured JSON logging with correlation ids and redaction.

Every log line, from structlog or from the standard library (aiohttp's access log, asyncpg,
aio-pika), passes through `redact`, which removes secrets by key name and anything shaped like
a card number by value. Cardholder data and secrets therefore cannot reach a log line, whatever
a caller passes.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars
from structlog.typing import EventDict, WrappedLogger

from common.cardholder import redact_card_numbers

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"pass(word)?|secret|token|api[_-]?key|authorization|hmac|cvc|cvv|security[_-]?code|"
    r"card[_-]?number|^number$|pan$|expiry|iban|(?<!routing_)(?<!idempotency_)key$|dsn|amqp_url|database_url",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^\s@]*)?@", re.I)
_BEARER = re.compile(r"(?i)\b((?:bearer|basic)\s+)[^\s\"',]+")
# key=value DSNs, "password: x", "cvc=123", "hmac_key=..." in free text
_PASSWORD_PAIR = re.compile(
    r"(?i)\b((?:password|passwd|pwd|secret|cvc|cvv|cvc2|security[_ -]?code|hmac[_ -]?key"
    r"|api[_ -]?key)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]+"
)


_PAIR_WORDS = ("pass", "pwd", "secret", "cvc", "cvv", "security", "hmac", "api")


def scrub_text(text: str) -> str:
    """Remove card numbers, URL credentials, passwords and bearer tokens from free text.

    Each pattern runs only on text that could hold it (a cheap test first): a log line is
    mostly short strings with none of them, and this runs for every value of every line."""
    text = redact_card_numbers(text, REDACTED)
    if "@" in text and "://" in text:
        text = _URL_CREDENTIALS.sub(r"\g<scheme>" + REDACTED + "@", text)
    lowered = text.lower()
    if ("=" in text or ":" in text) and any(word in lowered for word in _PAIR_WORDS):
        text = _PASSWORD_PAIR.sub(r"\g<1>" + REDACTED, text)
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(r"\g<1>" + REDACTED, text)
    return text


def scrub(value: Any, key: str | None = None, depth: int = 0) -> Any:
    if key is not None and _SECRET_KEY.search(key):
        return REDACTED
    if depth > 8:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: scrub(v, str(k), depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [scrub(v, None, depth + 1) for v in value]
    if isinstance(value, bool | int | float | type(None)):
        if isinstance(value, int) and not isinstance(value, bool) and value > 10**11:
            return scrub_text(str(value))
        return value
    if hasattr(value, "get_secret_value"):
        return REDACTED
    return scrub_text(str(value))


_STRUCTLOG_KEYS = frozenset({"event", "level", "logger", "timestamp", "correlation_id"})


_UNTOUCHED_KEYS = frozenset({"level", "logger", "timestamp", "_record", "_from_structlog"})


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        if key in _UNTOUCHED_KEYS:
            continue
        value = event_dict[key]
        event_dict[key] = scrub(value, None if key in _STRUCTLOG_KEYS else key)
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route structlog and the standard library through one JSON renderer with redaction."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        # before the hand-over to the standard library: no handler (ours or another one on
        # the root logger) ever receives an unredacted event
        redact,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_service(service),
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(RecoveredConnectionLevel())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_marketpay", False):
            root.removeHandler(existing)
    handler._marketpay = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())


RECONNECTING_LIBRARIES = ("aio_pika", "aiormq", "pamqp", "asyncpg")


class RecoveredConnectionLevel(logging.Filter):
    """The broker and database clients log a lost connection (and the callbacks it breaks)
    as ERROR, although the robust connection and the pool recover by themselves; an operator
    who alerts on ERROR would be paged for every restart. Their errors are logged as warnings;
    what needs a person (a consumer that dead-letters, a relay that cannot lead, readiness
    failing) is logged as an error by the service's own code."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith(RECONNECTING_LIBRARIES):
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
        return True


def _add_service(service: str) -> Any:
    def add(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def current_correlation_id() -> str | None:
    value = get_contextvars().get("correlation_id")
    return str(value) if value is not None else None


@contextmanager
def correlation(correlation_id: str, **more: Any) -> Iterator[None]:
    """Bind a correlation id (and more context) for the duration of a request or message."""
    tokens = bind_contextvars(correlation_id=correlation_id, **more)
    try:
        yield
    finally:
        reset_contextvars(**tokens)
