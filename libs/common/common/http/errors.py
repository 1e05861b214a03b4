"""API errors and their JSON shape (DESIGN §4).

ApiError                      any 4xx/5xx with a stable `code` and the offending `param`
├── BadRequest          400   malformed request (JSON syntax, missing Idempotency-Key)
├── Unauthorized        401   no or unknown credential
├── PaymentRequired     402   the payment itself failed
├── Forbidden           403   a credential that may not do this
├── NotFound            404   nothing of that id for this credential's tenant
├── Conflict            409   concurrent request, state that forbids the action
├── Unprocessable       422   well-formed but invalid values
└── ServiceUnavailable  503   a dependency (the database) is unreachable: retry later
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError


class ApiError(Exception):
    status = 500
    default_code = "internal_server_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.retry_after = retry_after
        """Seconds: "not yet, ask again" (a `Retry-After` header). Such an answer is not kept
        for replay under the request's Idempotency-Key, so the retry runs again."""

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "param": self.param}}

    def response(self) -> web.Response:
        response = web.json_response(self.body(), status=self.status)
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        return response


class BadRequest(ApiError):
    status = 400
    default_code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    default_code = "unauthorized"


class PaymentRequired(ApiError):
    status = 402
    default_code = "payment_failed"


class Forbidden(ApiError):
    status = 403
    default_code = "forbidden"


class NotFound(ApiError):
    status = 404
    default_code = "not_found"


class Conflict(ApiError):
    status = 409
    default_code = "conflict"


class Unprocessable(ApiError):
    status = 422
    default_code = "unprocessable_entity"


class ServiceUnavailable(ApiError):
    status = 503
    default_code = "service_unavailable"


_GENERIC_CODES = {
    "missing": "parameter_missing",
    "extra_forbidden": "unexpected_parameter",
}


def from_validation_error(exc: ValidationError, *, prefix: tuple[str, ...] = ()) -> ApiError:
    """The first problem of a pydantic error as an API error naming the field.

    Custom error types raised by our validators (`currency_invalid`, `rate_invalid`,
    `iban_invalid`, ...) are already stable codes and pass through as they are.
    """
    first = exc.errors(include_url=False)[0]
    loc = [str(part) for part in (*prefix, *first["loc"]) if not _is_internal(part)]
    param = ".".join(loc) or None
    kind = first["type"]
    if kind in _GENERIC_CODES:
        code = _GENERIC_CODES[kind]
    elif kind.endswith("_invalid") or kind.endswith("_required"):
        code = kind
    else:
        code = "parameter_invalid"
    message = first["msg"]
    if param:
        message = f"{param}: {message}"
    return Unprocessable(message, code=code, param=param)


def _is_internal(part: object) -> bool:
    # pydantic adds validator names such as "function-after[...]" to some locations
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))
