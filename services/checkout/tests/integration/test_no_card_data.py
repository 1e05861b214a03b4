"""Invariant 7: no card number, security code or HMAC key in any log line or any table.

Card journeys of every kind run through checkout and the sandbox, including requests that
carry raw card data by mistake; then every captured log line and every row of every checkout
table is scanned."""

import logging
import uuid

from common.logging import configure_logging
from common.runtime import DB_POOL
from psp_sandbox.domain import encode_three_ds_result

from .test_card_journeys import new_session, pay

CARDS = ["4242424242424242", "4000000000009995", "4000000000003220", "5555555555554444"]


async def test_no_card_number_cvc_or_hmac_key_in_logs_or_tables(checkout, capsys):
    # given every log line of this process captured as the services write them
    configure_logging("card-data-scan", "DEBUG")
    try:
        tenant = await checkout.new_tenant()
        account = await checkout.sandbox.merchant_account(tenant.merchant_account, None)
        # when card payments of every outcome run, with a 3DS challenge among them
        for number in CARDS:
            session = await new_session(checkout, tenant)
            result = await (await pay(checkout, session, await checkout.tokenise(number))).json()
            action = (result.get("data") or {}).get("action")
            if action:
                await checkout.http.post(
                    f"{checkout.url}/v1/shop/payments/details",
                    json={
                        "details": {
                            "threeDSResult": encode_three_ds_result(
                                action["authorisationToken"], True
                            )
                        }
                    },
                    headers={
                        "Authorization": f"Bearer {session['client_token']}",
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                )
        # and a storefront mistakenly sends raw card data
        session = await new_session(checkout, tenant)
        await pay(
            checkout,
            session,
            {
                "type": "scheme",
                "number": CARDS[0],
                "cvc": "737",
                "expiryMonth": "03",
                "expiryYear": "2030",
            },
        )
        await pay(checkout, session, {"type": "scheme", "encryptedCardNumber": f"test_{CARDS[3]}"})
        logging.getLogger("probe").info("a careless line %s cvc=%s", CARDS[0], "737")
        lines = capsys.readouterr().out
        async with checkout.app[DB_POOL].acquire() as conn:
            tables = [
                r["relname"]
                for r in await conn.fetch(
                    "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                )
            ]
            rows = []
            for table in tables:
                rows += [r[0] for r in await conn.fetch(f'SELECT t::text FROM "{table}" t')]
            stored = "\n".join(rows)
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_marketpay", False)]:
            root.removeHandler(handler)
    # then
    assert "payments" in tables
    assert "payment_timeline" in tables
    assert lines.count("\n") > 10  # the scan read real log output
    secrets_ = [*CARDS, "4242 4242 4242 4242", account["hmac_key"], account["api_key"]]
    for secret in secrets_:
        assert secret not in lines, f"{secret[:4]}... found in a log line"
        assert secret not in stored, f"{secret[:4]}... found in a table"
    for field in ("cvc", "encryptedSecurityCode", "encryptedCardNumber", "securityCode"):
        assert field not in stored, f"{field} found in a table"
    assert "cvc=737" not in lines
