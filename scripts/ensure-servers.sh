#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ answer, in this order (README, "Run it"):
#   1. they answer on the configured addresses: use them;
#   2. they are installed here but stopped: start them;
#   3. a Docker engine answers: start them from docker-compose.yml;
#   4. on Debian or Ubuntu, as root: install them from the distribution's packages, start them;
#   5. otherwise say what is missing and how to point Marketpay at existing servers.
# The addresses: MARKETPAY_PG_HOST/MARKETPAY_PG_PORT (127.0.0.1:5432) and
# MARKETPAY_AMQP_HOST/MARKETPAY_AMQP_PORT (127.0.0.1:5672). A test run pointed elsewhere
# (MARKETPAY_TEST_PG_DSN / MARKETPAY_TEST_AMQP_URL) is left alone.
# MARKETPAY_SERVERS_DRY_RUN=1 prints the path it would take and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_HOST=${MARKETPAY_PG_HOST:-127.0.0.1}
PG_PORT=${MARKETPAY_PG_PORT:-5432}
AMQP_HOST=${MARKETPAY_AMQP_HOST:-127.0.0.1}
AMQP_PORT=${MARKETPAY_AMQP_PORT:-5672}
OS_RELEASE=${MARKETPAY_OS_RELEASE:-/etc/os-release}
DRY_RUN=${MARKETPAY_SERVERS_DRY_RUN:-}

answers() { # host, port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}
pg_answers() { # ready for queries (pg_isready), not only listening, where pg_isready exists
    [ -n "${MARKETPAY_TEST_PG_DSN:-}" ] && return 0
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null
    else
        answers "$PG_HOST" "$PG_PORT"
    fi
}
amqp_answers() { [ -n "${MARKETPAY_TEST_AMQP_URL:-}" ] || answers "$AMQP_HOST" "$AMQP_PORT"; }

wait_for() { # name, check
    for _ in $(seq 1 90); do
        if "$2"; then return 0; fi
        sleep 1
    done
    echo "$1 did not come up" >&2
    return 1
}

# what runs a command, or in a dry run only says it
run() {
    if [ -n "$DRY_RUN" ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

path() { echo "servers: $1"; }

if pg_answers && amqp_answers; then
    path "using PostgreSQL on $PG_HOST:$PG_PORT and RabbitMQ on $AMQP_HOST:$AMQP_PORT"
    exit 0
fi

local_address() { [ "$PG_HOST" = 127.0.0.1 ] || [ "$PG_HOST" = localhost ]; }

start_local_postgres() {
    run pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
}
start_local_rabbitmq() {
    # every quorum queue keeps files open: give the broker more than the default 1024
    ulimit -n 65536 2>/dev/null || true
    run rabbitmq-server -detached
}

# 2. installed here, stopped
if local_address && { pg_answers || command -v pg_ctlcluster >/dev/null; } &&
    { amqp_answers || command -v rabbitmq-server >/dev/null; }; then
    path "starting the PostgreSQL and RabbitMQ installed on this machine"
    pg_answers || start_local_postgres
    amqp_answers || start_local_rabbitmq
    [ -n "$DRY_RUN" ] && exit 0
    wait_for "PostgreSQL on $PG_HOST:$PG_PORT" pg_answers
    wait_for "RabbitMQ on $AMQP_HOST:$AMQP_PORT" amqp_answers
    exit 0
fi

# 3. a Docker engine
if local_address && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    path "starting PostgreSQL and RabbitMQ with Docker (docker-compose.yml)"
    if docker compose version >/dev/null 2>&1; then
        run docker compose up -d postgres rabbitmq
    else
        run docker-compose up -d postgres rabbitmq
    fi
    [ -n "$DRY_RUN" ] && exit 0
    wait_for "PostgreSQL on $PG_HOST:$PG_PORT" pg_answers
    wait_for "RabbitMQ on $AMQP_HOST:$AMQP_PORT" amqp_answers
    exit 0
fi

# 4. Debian or Ubuntu, as root: the distribution's packages
distribution=$( (. "$OS_RELEASE" 2>/dev/null && echo "${ID:-} ${ID_LIKE:-}") || true)
if local_address && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null &&
    [[ " $distribution " =~ \ (debian|ubuntu)\  ]]; then
    path "installing PostgreSQL and RabbitMQ from the distribution's packages"
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql rabbitmq-server
    if [ -z "$DRY_RUN" ]; then
        # local development: the trust authentication the local profile expects, on 127.0.0.1
        version=$(ls /etc/postgresql | head -n1)
        sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' \
            "/etc/postgresql/$version/main/pg_hba.conf"
        # the package may have started it already (systemd): then it rereads pg_hba.conf
        if pg_answers; then
            pg_ctlcluster --skip-systemctl-redirect "$version" main reload
        fi
    fi
    pg_answers || start_local_postgres
    amqp_answers || start_local_rabbitmq
    [ -n "$DRY_RUN" ] && exit 0
    wait_for "PostgreSQL on $PG_HOST:$PG_PORT" pg_answers
    wait_for "RabbitMQ on $AMQP_HOST:$AMQP_PORT" amqp_answers
    exit 0
fi

# 5. nothing we can do here
missing=()
pg_answers || missing+=("PostgreSQL on $PG_HOST:$PG_PORT")
amqp_answers || missing+=("RabbitMQ on $AMQP_HOST:$AMQP_PORT")
path "none found"
cat >&2 <<TXT
Marketpay needs PostgreSQL and RabbitMQ, and nothing answers: ${missing[*]}.
No Docker engine answers here, and this is not a Debian or Ubuntu machine where this runs as
root, so nothing was installed. Either
  - start a Docker engine and run make up again (docker-compose.yml starts both), or
  - install PostgreSQL (15 or later) and RabbitMQ (3.13 or later) and start them, or
  - point Marketpay at servers you have:
      MARKETPAY_PG_HOST=db.example MARKETPAY_PG_PORT=5432 \\
      MARKETPAY_AMQP_HOST=mq.example MARKETPAY_AMQP_PORT=5672 make up
    (the roles are made with MARKETPAY_ADMIN_DSN, a superuser's DSN; README, "Run it").
TXT
exit 1
