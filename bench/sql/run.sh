#!/bin/sh
# bench/sql/run.sh [bench_sql options] - build bench_sql, start a
# PostgreSQL of its own (initdb into a temporary folder, 127.0.0.1, a free
# port, as `nobody` when run as root), and benchmark SQLite and
# PostgreSQL with 1,000,000 keys loaded by the bench.  Run from the build
# folder: sh ../bench/sql/run.sh  (or from an in-tree build: sh bench/sql/run.sh)
#
# The server runs without fsync (a bench's throwaway data: the 1M-key COPY
# loads in half the time; lookups read the same pages either way).
#
# On a shared machine, BENCH_NICE=-15 (as root) runs the bench and the
# server at a higher priority, so that other load does not make the tail
# latencies; the figures say which was used.
set -eu
NICE="nice -n ${BENCH_NICE:-0}"
B=$(pwd)
make -s bench/sql/bench_sql bench/memstore.la >/dev/null
PG_BENCH_OPTS="-c shared_buffers=256MB -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
. "$(dirname "$0")/../pg_server.sh"
KEYGATE_PLUGIN_PATH=$B/plugins:$B/bench $NICE "$B/bench/sql/bench_sql" --sqlite "$tmp/bench.db" \
    --pg "host=127.0.0.1 port=$PORT dbname=keygate user=keygate sslmode=disable" "$@"
