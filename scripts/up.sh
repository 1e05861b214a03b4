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

declare -A PORTS=([tenants]=8086 [checkout]=8081 [webhooks]=8082 [capture]=8083 [psp_sandbox]=8090)
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
# The demo tenant's merchant account at the PSP stand-in, sending its webhooks to the webhooks
# service, which gets the account's HMAC key from the demo operator (once: a second run finds
# the key there already).
HMAC_KEY=$(curl -fsS -X POST -H 'Content-Type: application/json' \
    -d '{"merchant_account": "DemoMarketplaceECOM", "webhook_url": "http://127.0.0.1:8082/v1/webhooks/psp/adyen"}' \
    http://127.0.0.1:8090/sandbox/merchant-accounts \
    | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["hmac_key"])')
OPERATOR_KEY=$(.venv/bin/python -c 'import json; print(json.load(open(".run/demo-keys.json"))["operator_key"])')
for i in $(seq 1 40); do
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
        -H "Authorization: Bearer $OPERATOR_KEY" -H 'Content-Type: application/json' \
        -d "{\"merchant_account\": \"DemoMarketplaceECOM\", \"key\": \"$HMAC_KEY\"}" \
        http://127.0.0.1:8082/v1/admin/webhooks/hmac-keys || true)
    if [ "$status" = 201 ] || [ "$status" = 409 ]; then break; fi
    if [ "$i" = 40 ]; then echo "could not give the webhooks service its HMAC key ($status)" >&2; fi
    sleep 0.5
done

cat <<'TXT'

Marketpay is up. Logs: .run/services.log   Keys of the demo tenant: .run/demo-keys.json
Try:
  OPERATOR=$(python3 -c 'import json;print(json.load(open(".run/demo-keys.json"))["operator_key"])')
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8086/v1/admin/tenant
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8086/v1/admin/suppliers
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8086/v1/admin/commissions
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8083/v1/admin/captures
More in README.md ("A five-minute tour"; capture and the OMS: docs/oms-contract.md). Stop with: make down
TXT
