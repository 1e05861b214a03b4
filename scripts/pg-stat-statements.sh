#!/usr/bin/env bash
# Load pg_stat_statements into the local PostgreSQL for `make bench`, whose standing profile
# shows the server's own view of the statements (execution time, calls, rows) beside the
# services'. It is loaded tracking nothing (pg_stat_statements.track = none); a benchmark turns
# it on for its own scratch database only (ALTER DATABASE ... SET pg_stat_statements.track).
#
# Loading a library into shared_preload_libraries needs a server restart: done here once, and
# only for a local cluster that pg_ctlcluster manages (Debian's packages), as root. Anywhere
# else it says how, and the benchmarks go on without the server-side view.
# BENCH_PG_STAT_STATEMENTS=0 leaves the server alone.
set -euo pipefail

[ "${BENCH_PG_STAT_STATEMENTS:-1}" = 0 ] && exit 0
DSN=${MARKETPAY_TEST_PG_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}
PG_PORT=${MARKETPAY_PG_PORT:-5432}

q() { psql "$DSN" -Atqc "$1"; }

libs=$(q "SHOW shared_preload_libraries" | tr -d ' ')
case ",$libs," in
*,pg_stat_statements,*)
    echo "pg_stat_statements: loaded"
    exit 0
    ;;
esac

how="add pg_stat_statements to shared_preload_libraries and restart PostgreSQL to see the"
how="$how server's top statements in the benchmarks' profiles"
if [ -n "${MARKETPAY_TEST_PG_DSN:-}" ] || [ "$(id -u)" != 0 ] || ! command -v pg_lsclusters >/dev/null; then
    echo "pg_stat_statements: not loaded ($how)"
    exit 0
fi
cluster=$(pg_lsclusters --no-header | awk -v port="$PG_PORT" '$3 == port && $4 == "online" { print $1, $2 }')
if [ -z "$cluster" ]; then
    echo "pg_stat_statements: not loaded, no local cluster online on port $PG_PORT ($how)"
    exit 0
fi

echo "pg_stat_statements: loading it into cluster $cluster (a restart of PostgreSQL)"
q "ALTER SYSTEM SET shared_preload_libraries = '${libs:+$libs,}pg_stat_statements'"
# shellcheck disable=SC2086  # "version name"
pg_ctlcluster $cluster restart
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 1
done
q "ALTER SYSTEM SET pg_stat_statements.track = 'none'"
q "SELECT pg_reload_conf()" >/dev/null
echo "pg_stat_statements: loaded, tracking nothing until a benchmark asks for its database"
