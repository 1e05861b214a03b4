"""Exports' API errors (`common.http.errors.ApiError`s with stable codes):

Forbidden       403  forbidden              a supplier key asks for the supplier payouts export
NotFound        404  export_not_found       no export of that id for this credential (another
                                            tenant's, or another supplier's)
Conflict        409  export_not_ready       a download before the file is READY
Gone            410  export_expired         a download after the retention period
                     export_file_missing    a READY export whose file storage no longer has
                                            (deleted by hand, a lost directory): ask again
Unprocessable   422  parameter_invalid ...  a bad filter, named by its param (`filters.x`)
"""

from __future__ import annotations

from common.http.errors import ApiError, Conflict, Forbidden, NotFound, Unprocessable


class Gone(ApiError):
    status = 410
    default_code = "gone"


def export_not_found() -> NotFound:
    return NotFound("no such export", code="export_not_found", param="id")


def operators_only(export_type: str) -> Forbidden:
    return Forbidden(
        f"the {export_type} export is for operators only", code="forbidden", param="type"
    )


def not_ready(status: str) -> Conflict:
    return Conflict(f"the export is {status}, not READY", code="export_not_ready", param="id")


def expired() -> Gone:
    return Gone("the export expired and its file was deleted", code="export_expired", param="id")


def filter_invalid(param: str, message: str) -> Unprocessable:
    return Unprocessable(f"{param}: {message}", code="parameter_invalid", param=param)


def file_missing() -> Gone:
    return Gone(
        "the export's file is no longer in storage; ask for the export again",
        code="export_file_missing",
        param="id",
    )
