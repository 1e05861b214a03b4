#!/usr/bin/env bash
# `make up`: provision the database, start every service of the Procfile under honcho in the
# background, wait until each is ready, create the demo tenant and print what to try.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run
export MARKETPAY_PROFILE=local

if [ -f .run/honcho.pid ] && kill -0 "$(cat .run/honcho.pid)" 2>/dev/null; then
    echo "already running (make down to stop)"
else
    .venv/bin/python scripts/provision.py
    setsid nohup .venv/bin/honcho start -f Procfile >.run/services.log 2>&1 &
    echo $! >.run/honcho.pid
fi

declare -A PORTS=([tenants]=8086 [checkout]=8081 [webhooks]=8082 [capture]=8083 [payouts]=8084 [psp_sandbox]=8090)
for service in "${!PORTS[@]}"; do
    url="http://127.0.0.1:${PORTS[$service]}/readyz"
    for i in $(seq 1 60); do
        if curl -fsS "$url" >/dev/null 2>&1; then break; fi
        if [ "$i" = 60 ]; then
            echo "$service did not become ready; see .run/services.log" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "$service ready on port ${PORTS[$service]}"
done

.venv/bin/python scripts/seed_demo.py --url http://127.0.0.1:8086 \
    --admin-key local_platform_admin_key --out .run/demo-keys.json
# Tenants made by an earlier `make up` reach the replicas of services added since: every
# service's replica takes the full state again, and ignores what it has already.
curl -fsS -X POST -H 'Authorization: Bearer local_platform_admin_key' \
    http://127.0.0.1:8086/v1/platform/replicas/republish >/dev/null
# The demo tenant's merchant account at the PSP stand-in, signing its webhooks to the webhooks
# service with a fixed local-development HMAC key, which the demo operator gives the webhooks
# service too (200 when it has it already, from an earlier run).
DEMO_HMAC_KEY=6c6f63616c2d646576656c6f706d656e742d64656d6f2d686d61632d6b657921
curl -fsS -X POST -H 'Content-Type: application/json' \
    -d "{\"merchant_account\": \"DemoMarketplaceECOM\", \"hmac_key\": \"$DEMO_HMAC_KEY\",
         \"webhook_url\": \"http://127.0.0.1:8082/v1/webhooks/psp/adyen\"}" \
    http://127.0.0.1:8090/sandbox/merchant-accounts >/dev/null
OPERATOR_KEY=$(.venv/bin/python -c 'import json; print(json.load(open(".run/demo-keys.json"))["operator_key"])')
for i in $(seq 1 40); do
    status=$(curl -s -o .run/hmac-key.json -w '%{http_code}' -X PUT \
        -H "Authorization: Bearer $OPERATOR_KEY" -H 'Content-Type: application/json' \
        -d "{\"merchant_account\": \"DemoMarketplaceECOM\", \"key\": \"$DEMO_HMAC_KEY\"}" \
        http://127.0.0.1:8082/v1/admin/webhooks/hmac-keys || true)
    if [ "$status" = 201 ] || [ "$status" = 200 ]; then break; fi
    if [ "$i" = 40 ]; then
        echo "the webhooks service did not take the demo HMAC key ($status):" >&2
        cat .run/hmac-key.json >&2
        echo "PSP webhooks will be refused; revoke the old keys (docs/operations.md)" >&2
    fi
    sleep 0.5
done
rm -f .run/hmac-key.json

cat <<'TXT'

Marketpay is up. Logs: .run/services.log   Keys of the demo tenant: .run/demo-keys.json
Try:
  OPERATOR=$(python3 -c 'import json;print(json.load(open(".run/demo-keys.json"))["operator_key"])')
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8086/v1/admin/tenant
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8086/v1/admin/suppliers
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8086/v1/admin/commissions
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8083/v1/admin/captures
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8084/v1/admin/balances
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8084/v1/admin/ledger/check
More in README.md ("A five-minute tour"; capture and the OMS: docs/oms-contract.md). Stop with: make down
TXT
