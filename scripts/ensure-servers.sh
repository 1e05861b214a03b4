#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ answer on 127.0.0.1 (start the local ones if they don't).
# A run pointed elsewhere (MARKETPAY_TEST_PG_DSN / MARKETPAY_TEST_AMQP_URL) is left alone.
set -euo pipefail

wait_for() { # name, command
    for _ in $(seq 1 60); do
        if eval "$2" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "$1 did not come up" >&2
    return 1
}

if [ -z "${MARKETPAY_TEST_PG_DSN:-}" ]; then
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        echo "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
        wait_for PostgreSQL "pg_isready -q -h 127.0.0.1 -p 5432"
    fi
fi

if [ -z "${MARKETPAY_TEST_AMQP_URL:-}" ]; then
    if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
        echo "starting RabbitMQ"
        # every quorum queue keeps files open: give the broker more than the default 1024
        ulimit -n 65536 2>/dev/null || true
        rabbitmq-server -detached
        wait_for RabbitMQ "rabbitmq-diagnostics -q check_port_connectivity"
    fi
fi
