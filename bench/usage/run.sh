#!/bin/sh
# bench/usage/run.sh [bench_usage options] - build bench_usage, start a
# PostgreSQL of its own (initdb into a temporary folder, 127.0.0.1, a free
# port, as `nobody` when run as root; fsync on, as a production server),
# and time one flush of 100,000 rows into SQLite and into PostgreSQL.
# Run from the build folder: sh ../bench/usage/run.sh
set -eu
NICE="nice -n ${BENCH_NICE:-0}"
B=$(pwd)
make -s bench/usage/bench_usage >/dev/null
PG_BENCH_OPTS="-c shared_buffers=256MB"
. "$(dirname "$0")/../pg_server.sh"
$NICE "$B/bench/usage/bench_usage" --sqlite "$tmp/usage.db" \
    --pg "host=127.0.0.1 port=$PORT dbname=keygate user=keygate sslmode=disable" "$@"
