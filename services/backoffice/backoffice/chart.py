"""A chart of captured / refunded / paid-out amounts per day, built server-side as inline SVG
from the ledger (payouts service): the postings of the accounts the logged-in key may read.

An operator sees the marketplace's money flow: captures and refunds from the PSP clearing
account (the PSP takes the buyer's money on a capture, gives it back on a refund), payouts from
the bank clearing account (money that left for bank accounts). A supplier sees its own
account: its share of captures, of refunds, and its payouts. The numbers are sums of postings,
nothing else; the table under the chart shows them exactly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from backoffice.sessions import Login
from backoffice.web import call, logged_in, money, refused, render

routes = web.RouteTableDef()

SERIES = ("captured", "refunded", "paid_out")
KINDS = {"CAPTURE": "captured", "REFUND": "refunded", "PAYOUT": "paid_out"}
# which account says what, and the sign that makes its amounts positive
OPERATOR_SOURCES = {"PSP_CLEARING": {"CAPTURE": -1, "REFUND": 1}, "BANK_CLEARING": {"PAYOUT": 1}}
SUPPLIER_SOURCES = {"SUPPLIER": {"CAPTURE": 1, "REFUND": -1, "PAYOUT": -1}}
MAX_PAGES = 40  # 4,000 postings per account at most; the page says when it stopped there
DAY_CHOICES = (7, 14, 30, 90)


@dataclass(frozen=True)
class Day:
    day: date
    captured: int
    refunded: int
    paid_out: int

    def value(self, series: str) -> int:
        return int(getattr(self, series))


def daily_totals(
    postings: list[tuple[str, dict[str, Any]]],
    signs: dict[str, dict[str, int]],
    first: date,
    last: date,
) -> dict[str, list[Day]]:
    """Per currency, one Day per calendar day (UTC) from `first` to `last`, each series the
    signed sum of its postings. `postings` pairs an account type with a ledger posting."""
    sums: dict[tuple[str, date, str], int] = {}
    currencies: set[str] = set()
    for account_type, posting in postings:
        sign = signs.get(account_type, {}).get(posting["kind"])
        if sign is None:
            continue
        when = datetime.fromisoformat(posting["posted_at"]).astimezone(UTC).date()
        if not first <= when <= last:
            continue
        currency = posting["amount"]["currency"]
        currencies.add(currency)
        key = (currency, when, KINDS[posting["kind"]])
        sums[key] = sums.get(key, 0) + sign * int(posting["signed_amount"])
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return {
        currency: [
            Day(
                d,
                sums.get((currency, d, "captured"), 0),
                sums.get((currency, d, "refunded"), 0),
                sums.get((currency, d, "paid_out"), 0),
            )
            for d in days
        ]
        for currency in sorted(currencies)
    }


def nice_ceiling(value: int) -> int:
    """The top of the axis: 1, 2, 2.5 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1
    power = 1
    while power * 10 <= value:
        power *= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


@dataclass(frozen=True)
class Bar:
    series: str
    x: float
    y: float
    height: float
    label: str


def svg_layout(
    days: list[Day], currency: str, width: int = 960, height: int = 300
) -> dict[str, Any]:
    """Coordinates for the template's SVG: grouped bars (one group a day), four gridlines."""
    left, right, top, bottom = 84, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = nice_ceiling(max((d.value(s) for d in days for s in SERIES), default=0))
    group = plot_w / max(len(days), 1)
    bar_w = max(1.0, group * 0.8 / len(SERIES))
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    every = max(1, len(days) // 10)
    for i, d in enumerate(days):
        x0 = left + i * group + group * 0.1
        for j, series in enumerate(SERIES):
            value = max(0, d.value(series))  # a day's net can't go below the axis here
            h = plot_h * value / top_value
            bars.append(
                Bar(
                    series,
                    round(x0 + j * bar_w, 2),
                    round(top + plot_h - h, 2),
                    round(h, 2),
                    f"{d.day.isoformat()} {series.replace('_', ' ')}: "
                    f"{money(d.value(series), currency)}",
                )
            )
        if i % every == 0:
            labels.append((round(left + i * group + group / 2, 2), d.day.strftime("%d %b")))
    grid = [
        (round(top + plot_h - plot_h * k / 4, 2), money(top_value * k // 4, currency))
        for k in range(5)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "plot_bottom": top + plot_h,
        "right_edge": width - right,
        "bars": bars,
        "labels": labels,
        "grid": grid,
        "bar_width": round(bar_w, 2),
    }


async def _postings(
    request: web.Request, login: Login, account_id: int, since: date
) -> tuple[list[dict[str, Any]], bool]:
    """The account's postings back to `since` (newest first, page by page); True when it
    stopped at MAX_PAGES before reaching `since`."""
    found: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(MAX_PAGES):
        answer = await call(
            request,
            login,
            "payouts",
            "GET",
            f"/v1/admin/accounts/{account_id}/transactions",
            params={"limit": "100", "after_cursor": cursor},
        )
        if not answer.ok:
            raise _Refused(answer)
        found.extend(answer.data)
        oldest = answer.data[-1]["posted_at"] if answer.data else None
        if oldest and datetime.fromisoformat(oldest).astimezone(UTC).date() < since:
            return found, False
        if not answer.page_info.get("has_next"):
            return found, False
        cursor = answer.page_info["end_cursor"]
    return found, True


class _Refused(Exception):
    def __init__(self, answer: Any) -> None:
        self.answer = answer


@routes.get("/chart")
@logged_in
async def chart(request: web.Request, login: Login) -> web.StreamResponse:
    try:
        days = int(request.query.get("days", "14"))
    except ValueError:
        days = 14
    days = days if days in DAY_CHOICES else 14
    last = datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    signs = OPERATOR_SOURCES if login.role == "operator" else SUPPLIER_SOURCES
    accounts = await call(
        request, login, "payouts", "GET", "/v1/admin/balances", params={"limit": "100"}
    )
    if not accounts.ok:
        return refused(request, accounts, "Daily amounts")
    postings: list[tuple[str, dict[str, Any]]] = []
    truncated = False
    try:
        for account in accounts.data:
            if account["type"] not in signs:
                continue
            rows, cut = await _postings(request, login, account["id"], first)
            truncated = truncated or cut
            postings.extend((account["type"], row) for row in rows)
    except _Refused as exc:
        return refused(request, exc.answer, "Daily amounts")
    per_currency = daily_totals(postings, signs, first, last)
    charts = [
        {
            "currency": currency,
            "days": series,
            "svg": svg_layout(series, currency),
            "totals": {s: sum(d.value(s) for d in series) for s in SERIES},
        }
        for currency, series in per_currency.items()
    ]
    return render(
        request,
        "chart.html",
        {
            "charts": charts,
            "days": days,
            "day_choices": DAY_CHOICES,
            "first": first,
            "last": last,
            "truncated": truncated,
            "series": SERIES,
        },
    )
