#!/usr/bin/env bash
# `make up`: provision the database, start every service of the Procfile under honcho in the
# background, wait until each is ready, create (or repair) the demo tenant and print what to try.
# REPLICAS=N runs N of each service that consumes (checkout, webhooks, capture; payouts and
# exports when the Procfile has them), replica n listening on its service's port + 100 n.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run
export MARKETPAY_PROFILE=local
REPLICAS=${REPLICAS:-1}
if ! [[ "$REPLICAS" =~ ^[1-9]$ ]]; then
    echo "REPLICAS is a number from 1 to 9 (got $REPLICAS)" >&2
    exit 2
fi
PG="${MARKETPAY_PG_HOST:-127.0.0.1}:${MARKETPAY_PG_PORT:-5432}"
export MARKETPAY_ADMIN_DSN=${MARKETPAY_ADMIN_DSN:-postgresql://postgres@$PG/postgres}
declare -A PORTS=([tenants]=8086 [checkout]=8081 [webhooks]=8082 [capture]=8083 [psp_sandbox]=8090 [backoffice]=8087)
SCALED=(checkout webhooks capture)
for extra in payouts:8084 exports:8085; do
    if grep -q "^${extra%%:*}:" Procfile; then
        PORTS[${extra%%:*}]=${extra##*:}
        SCALED+=("${extra%%:*}")
    fi
done
concurrency=""
for service in "${SCALED[@]}"; do concurrency+="${concurrency:+,}$service=$REPLICAS"; done

if [ -f .run/honcho.pid ] && kill -0 "$(cat .run/honcho.pid)" 2>/dev/null; then
    echo "already running (make down to stop)"
else
    .venv/bin/python scripts/provision.py
    # honcho's PORT (base 5000, + 100 per process type, + 1 per replica): the Procfile takes
    # the replica's number from it
    setsid nohup .venv/bin/honcho start -f Procfile -p 5000 -c "$concurrency" \
        >.run/services.log 2>&1 &
    echo $! >.run/honcho.pid
    echo "$REPLICAS" >.run/replicas
fi
REPLICAS=$(cat .run/replicas 2>/dev/null || echo 1)

for service in "${!PORTS[@]}"; do
    replicas=1
    [[ " ${SCALED[*]} " == *" $service "* ]] && replicas=$REPLICAS
    for n in $(seq 0 $((replicas - 1))); do
        port=$((PORTS[$service] + 100 * n))
        for i in $(seq 1 60); do
            if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
            if [ "$i" = 60 ]; then
                echo "$service did not become ready on port $port; see .run/services.log" >&2
                exit 1
            fi
            sleep 0.5
        done
        echo "$service ready on port $port"
    done
done

# The demo tenant (its dead keys replaced, when an earlier run's no longer work), its merchant
# account at the PSP stand-in, signing webhooks to the webhooks service with the fixed
# local-development HMAC key, which the webhooks service gets too; tenants made by an earlier
# `make up` reach the replicas of services added since (--republish).
.venv/bin/python scripts/seed_demo.py --url http://127.0.0.1:8086 \
    --admin-key local_platform_admin_key --out .run/demo-keys.json --republish \
    --sandbox-url http://127.0.0.1:8090 --webhooks-url http://127.0.0.1:8082

cat <<'TXT'

Marketpay is up. Logs: .run/services.log   Keys of the demo tenant: .run/demo-keys.json

In the browser:
  Demo storefront (card 4242 4242 4242 4242, 3-D Secure 4000 0000 0000 3220):
      http://127.0.0.1:8087/shop
  Back office (log in with the operator_key or supplier_key of .run/demo-keys.json):
      http://127.0.0.1:8087/login

Try:
  OPERATOR=$(python3 -c 'import json;print(json.load(open(".run/demo-keys.json"))["operator_key"])')
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8086/v1/admin/tenant
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8086/v1/admin/suppliers
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8086/v1/admin/commissions
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8083/v1/admin/captures
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8085/v1/exports
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8084/v1/admin/balances
  curl -s -H "Authorization: Bearer $OPERATOR" http://127.0.0.1:8084/v1/admin/ledger/check
More in README.md ("A five-minute tour"; capture and the OMS: docs/oms-contract.md). Stop with: make down
TXT
