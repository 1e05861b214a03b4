#!/usr/bin/env bash
# `make down`: stop the services `make up` started (not PostgreSQL or RabbitMQ).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f .run/honcho.pid ]; then
    echo "nothing to stop"
    exit 0
fi
pid=$(cat .run/honcho.pid)
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    echo "stopped"
fi
rm -f .run/honcho.pid .run/replicas
