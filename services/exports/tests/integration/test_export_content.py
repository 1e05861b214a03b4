"""Each export's content for a known data set, parsed back with the csv module and compared
cell by cell; dangerous cells neutralised; scopes, tenant isolation and bad filters."""

from __future__ import annotations

from typing import Any

import pytest

from exports.testing import dataset, parse_csv

T = "2026-11-02T"
HEADER_TRANSACTIONS = [
    "occurred_at", "transaction_type", "direction", "status", "amount", "currency",
    "payment_id", "order_id", "logistic_order_id", "supplier_id", "reference_id", "capture_id",
    "psp_reference", "platform_amount", "platform_rate", "marketplace_amount",
    "marketplace_rate", "supplier_amount", "reason",
]  # fmt: skip


def transactions(s1: str, s2: str) -> list[list[str]]:
    return [
        HEADER_TRANSACTIONS,
        [f"{T}09:30:00Z", "AUTHORISATION", "NONE", "AUTHORISED", "10000", "EUR", "pay_1",
         "ord_1", "lo_1", s1, "pay_1", "", "PSP-AUTH-1", "", "", "", "", "", ""],
        [f"{T}09:30:00Z", "AUTHORISATION", "NONE", "AUTHORISED", "999", "EUR", "pay_1",
         "ord_1", "lo_2", s2, "pay_1", "", "PSP-AUTH-1", "", "", "", "", "", ""],
        [f"{T}09:40:00Z", "CAPTURE", "CREDIT", "SUCCEEDED", "10000", "EUR", "pay_1", "ord_1",
         "lo_1", s1, "capture_1", "capture_1", "PSP-CAP-1", "250", "2.5", "1000", "10",
         "8750", ""],
        [f"{T}09:41:00Z", "CAPTURE", "CREDIT", "SUCCEEDED", "999", "EUR", "pay_1", "ord_1",
         "lo_2", s2, "capture_2", "capture_2", "'=PSP-CAP-2", "25", "2.5", "125", "12.5", "849",
         ""],
        [f"{T}09:50:00Z", "REFUND", "DEBIT", "SUCCEEDED", "500", "EUR", "pay_1", "ord_1",
         "lo_2", s2, "refund_1", "capture_2", "PSP-REF-1", "13", "2.5", "63", "12.5", "424",
         "'=HYPERLINK(\"http://evil.example\",\"click\")"],
        [f"{T}09:51:00Z", "REFUND", "NONE", "FAILED", "100", "EUR", "pay_1", "ord_1", "lo_1",
         s1, "refund_2", "capture_1", "", "3", "2.5", "10", "10", "87",
         "'-1; refused by the PSP\nsecond line"],
        [f"{T}10:00:00Z", "CHARGEBACK", "DEBIT", "RECEIVED", "10000", "EUR", "pay_1", "ord_1",
         "lo_1", s1, "cb_1", "capture_1", "PSP-CB-1", "250", "2.5", "1000", "10", "8750",
         "'@SUM(A1:A9)"],
        [f"{T}10:00:00Z", "CHARGEBACK", "DEBIT", "RECEIVED", "499", "EUR", "pay_1", "ord_1",
         "lo_2", s2, "cb_1", "capture_2", "PSP-CB-1", "12", "2.5", "62", "12.5", "425",
         "'@SUM(A1:A9)"],
        [f"{T}10:10:00Z", "CHARGEBACK_REVERSAL", "CREDIT", "REVERSED", "10000", "EUR", "pay_1",
         "ord_1", "lo_1", s1, "cb_1", "capture_1", "PSP-CB-1", "250", "2.5", "1000", "10",
         "8750", ""],
    ]  # fmt: skip


def supplier_payouts(s1: str, s2: str) -> list[list[str]]:
    return [
        ["payout_id", "created_at", "updated_at", "supplier_id", "status", "amount", "currency",
         "period_start", "period_end", "logistic_order_count", "logistic_order_ids",
         "provider_reference", "failure_code", "failure_message"],
        ["payout_1", f"{T}10:20:00Z", f"{T}10:25:00Z", s1, "SETTLED", "8750", "EUR",
         "2026-10-26T09:30:00Z", f"{T}08:30:00Z", "1", "lo_1", "PRV-payout_1", "", ""],
        ["payout_2", f"{T}10:21:00Z", f"{T}10:21:00Z", s2, "FAILED", "425", "EUR",
         "2026-10-26T09:30:00Z", f"{T}08:30:00Z", "2", "lo_2,lo_9", "", "'+iban_closed",
         "closed"],
    ]  # fmt: skip


FT_HEADER = [
    "funding_transfer_id", "created_at", "updated_at", "status", "amount", "currency",
    "source_account_type", "target_account_type", "supplier_id", "linked_type", "linked_id",
    "reason",
]  # fmt: skip


def funding_transfers(s1: str, s2: str) -> list[list[str]]:
    return [
        FT_HEADER,
        ["ft_1", f"{T}10:30:00Z", f"{T}10:31:00Z", "COMPLETED", "424", "EUR", "MARKETPLACE",
         "SUPPLIER", s2, "REFUND", "refund_1", ""],
        ["ft_2", f"{T}10:32:00Z", f"{T}10:32:00Z", "FAILED", "300", "EUR", "MARKETPLACE",
         "SUPPLIER", s1, "REFUND", "refund_1", "'\tinsufficient"],
    ]  # fmt: skip


async def fed_tenant(exports: Any) -> Any:
    tenant = await exports.new_tenant()
    s1, s2 = tenant.suppliers
    events = dataset(s1, s2)
    for event_type, data, occurred_at in events:
        await exports.publish(event_type, data, tenant.id, occurred_at)
    await exports.journalled(tenant, len(events))
    return tenant


async def test_each_export_holds_the_data_set_cell_by_cell(exports) -> None:
    # given
    tenant = await fed_tenant(exports)
    s1, s2 = tenant.suppliers
    # when
    raw = await exports.export_file(tenant.operator_key, "transactions")
    payouts = await exports.export_rows(tenant.operator_key, "supplier_payouts")
    transfers = await exports.export_rows(tenant.operator_key, "funding_transfers")
    # then
    assert parse_csv(raw) == transactions(s1, s2)
    assert payouts == supplier_payouts(s1, s2)
    assert transfers == funding_transfers(s1, s2)
    # the format itself: UTF-8, `;`, `\n` line ends, a quoted cell only where it must be
    text = raw.decode("utf-8")
    assert "\r" not in text
    assert text.splitlines()[0] == ";".join(HEADER_TRANSACTIONS)
    assert text.endswith("\n")


async def test_a_supplier_gets_only_its_own_logistic_orders_and_no_commissions(exports) -> None:
    # given
    tenant = await fed_tenant(exports)
    s1, s2 = tenant.suppliers
    key = tenant.supplier_keys[s2]
    expected = [
        row if n == 0 else [("" if 13 <= i <= 16 else cell) for i, cell in enumerate(row)]
        for n, row in enumerate(transactions(s1, s2))
        if n == 0 or row[9] == s2
    ]
    # when
    own = await exports.export_rows(key, "transactions")
    asking_for_another = await exports.export_rows(key, "transactions", {"supplier_ids": [s1]})
    transfers = await exports.export_rows(key, "funding_transfers")
    # then
    assert own == expected
    assert asking_for_another == [HEADER_TRANSACTIONS]
    assert transfers == [FT_HEADER, funding_transfers(s1, s2)[1]]


async def test_supplier_payouts_are_for_operators_only(exports) -> None:
    tenant = await exports.new_tenant()
    status, body = await exports.call(
        "POST",
        "/v1/exports",
        tenant.supplier_keys[tenant.suppliers[0]],
        json={"type": "supplier_payouts"},
    )
    assert status == 403, body
    assert body["error"]["code"] == "forbidden"


async def test_another_tenants_or_suppliers_export_is_not_found(exports) -> None:
    # given
    tenant = await fed_tenant(exports)
    other = await exports.new_tenant()
    export = await exports.request_export(tenant.operator_key, "transactions")
    await exports.until_status(tenant.operator_key, export["id"])
    supplier_key = tenant.supplier_keys[tenant.suppliers[0]]
    # when / then
    for key in (other.operator_key, supplier_key):
        for path in (f"/v1/exports/{export['id']}", f"/v1/exports/{export['id']}/download"):
            status, body = await exports.call("GET", path, key)
            assert status == 404, body
            assert body["error"]["code"] == "export_not_found"
    status, body = await exports.call("GET", "/v1/exports", other.operator_key)
    assert status == 200
    assert body["data"] == []
    # and the other tenant's own export of the same read model is empty
    assert await exports.export_rows(other.operator_key, "transactions") == [HEADER_TRANSACTIONS]


@pytest.mark.parametrize(
    ("export_type", "filters", "param"),
    [
        (
            "transactions",
            {"created_from": "2026-11-02T10:00:00Z", "created_to": "2026-11-01T10:00:00Z"},
            "filters.created_from",
        ),
        ("transactions", {"statuses": ["PAID"]}, "filters.statuses.0"),
        ("supplier_payouts", {"statuses": ["SETTLED", "LOST"]}, "filters.statuses.1"),
        ("funding_transfers", {"amount_min": 500, "amount_max": 100}, "filters.amount_min"),
        ("funding_transfers", {"amount_min": -1}, "filters.amount_min"),
        ("funding_transfers", {"source_account_types": ["BANK"]}, "filters.source_account_types.0"),
        ("transactions", {"created_from": "2026-11-02T10:00:00"}, "filters.created_from"),
        ("transactions", {"colour": "red"}, "filters.colour"),
        ("transactions", {"amount_max": 10**30}, "filters.amount_max"),
        ("transactions", {"currency": "XXY"}, "filters.currency"),
        ("transactions", {"supplier_ids": ["s" * 65]}, "filters.supplier_ids.0"),
        ("transactions", {"supplier_ids": []}, "filters.supplier_ids"),
        ("transactions", {"types": "CAPTURE"}, "filters.types"),
        ("everything", {}, "type"),
    ],
)
async def test_bad_filters_are_refused_with_their_param(
    exports, export_type: str, filters: dict[str, Any], param: str
) -> None:
    tenant = await exports.new_tenant(suppliers=0)
    status, body = await exports.call(
        "POST", "/v1/exports", tenant.operator_key, json={"type": export_type, "filters": filters}
    )
    assert status == 422, body
    assert body["error"]["param"] == param
    status, body = await exports.call("GET", "/v1/exports", tenant.operator_key)
    assert body["data"] == []  # nothing stored


async def test_filters_select_rows(exports) -> None:
    # given
    tenant = await fed_tenant(exports)
    s1, s2 = tenant.suppliers
    everything = transactions(s1, s2)
    # when
    window = await exports.export_rows(
        tenant.operator_key,
        "transactions",
        {
            "created_from": f"{T}09:40:00.500Z",  # inclusive at both ends
            "created_to": f"{T}10:00:00.500Z",
            "types": ["CAPTURE", "CHARGEBACK"],
            "amount_min": 500,
            "amount_max": 9999,
        },
    )
    failed = await exports.export_rows(
        tenant.operator_key,
        "supplier_payouts",
        {"statuses": ["FAILED"], "supplier_ids": [s2]},
    )
    # then
    assert window == [everything[0], everything[4]]
    assert failed == [supplier_payouts(s1, s2)[0], supplier_payouts(s1, s2)[2]]
    assert await exports.export_rows(
        tenant.operator_key, "funding_transfers", {"target_account_types": ["MARKETPLACE"]}
    ) == [FT_HEADER]


async def test_status_list_and_idempotency_key(exports) -> None:
    # given
    tenant = await fed_tenant(exports)
    body = {"type": "transactions", "filters": {"types": ["CAPTURE"]}}
    # when
    first = await exports.call("POST", "/v1/exports", tenant.operator_key, body, "key-1")
    again = await exports.call("POST", "/v1/exports", tenant.operator_key, body, "key-1")
    other = await exports.call(
        "POST", "/v1/exports", tenant.operator_key, {"type": "supplier_payouts"}, "key-1"
    )
    # then
    assert first[0] == again[0] == 202
    assert again[1]["data"]["id"] == first[1]["data"]["id"]
    assert other[0] == 422
    assert other[1]["error"]["code"] == "idempotency_params_mismatch"
    ready = await exports.until_status(tenant.operator_key, first[1]["data"]["id"])
    assert ready["rows_written"] == ready["rows_total"] == 2
    assert ready["download_url"] == f"/v1/exports/{ready['id']}/download"
    status, listed = await exports.call("GET", "/v1/exports?status=READY", tenant.operator_key)
    assert status == 200
    assert [e["id"] for e in listed["data"]] == [ready["id"]]
    async with exports.http.get(f"{exports.url}/metrics") as response:
        metrics = await response.text()
    assert 'exports_attempts_total{outcome="ready",type="transactions"} 1.0' in metrics
    assert 'exports_rows_total{type="transactions"} 2.0' in metrics
    status, listed = await exports.call("GET", "/v1/exports?status=DONE", tenant.operator_key)
    assert status == 422
    assert listed["error"]["param"] == "status"


async def test_several_exports_run_at_once(exports) -> None:
    # given: a second replica, each writing two at once
    tenant = await fed_tenant(exports)
    await exports.start()
    s1, s2 = tenant.suppliers
    # when
    asked = [
        await exports.request_export(tenant.operator_key, kind)
        for kind in ["transactions", "supplier_payouts", "funding_transfers"] * 2
    ]
    # then
    expected = {
        "transactions": transactions(s1, s2),
        "supplier_payouts": supplier_payouts(s1, s2),
        "funding_transfers": funding_transfers(s1, s2),
    }
    for export in asked:
        ready = await exports.until_status(tenant.operator_key, export["id"])
        assert ready["attempt"] == 1
        status, raw, headers = await exports.download(tenant.operator_key, export["id"])
        assert status == 200
        assert headers["Content-Type"] == "text/csv; charset=utf-8"
        assert parse_csv(raw) == expected[export["type"]]


async def test_the_list_pages_with_cursors_and_a_lost_file_is_gone(exports) -> None:
    # given
    tenant = await fed_tenant(exports)
    asked = [
        (await exports.request_export(tenant.operator_key, "funding_transfers"))["id"]
        for _ in range(3)
    ]
    for export_id in asked:
        await exports.until_status(tenant.operator_key, export_id)
    # when
    status, first = await exports.call("GET", "/v1/exports?limit=2", tenant.operator_key)
    cursor = first["page_info"]["end_cursor"]
    status, second = await exports.call(
        "GET", f"/v1/exports?limit=2&after_cursor={cursor}", tenant.operator_key
    )
    # then: newest first, no export twice, none missing
    assert [e["id"] for e in first["data"] + second["data"]] == asked[::-1]
    assert first["page_info"]["has_next"] is True
    assert second["page_info"]["has_next"] is False
    # and a READY export whose file was deleted behind the service's back is 410, not a 500
    (exports.storage_dir / tenant.id / asked[0] / "1.csv").unlink()
    status, body = await exports.call(
        "GET", f"/v1/exports/{asked[0]}/download", tenant.operator_key
    )
    assert status == 410, body
    assert body["error"]["code"] == "export_file_missing"
