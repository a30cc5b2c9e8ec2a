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
PGBIN=
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && PGBIN=$d; done
[ -n "$PGBIN" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)"; exit 1; }

tmp=$(mktemp -d /tmp/kg-bench-XXXXXX)
chmod 755 "$tmp"
RUN=
if [ "$(id -u)" -eq 0 ]; then chown nobody "$tmp"; RUN="runuser -u nobody --"; fi
trap '$RUN "$PGBIN/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1; rm -rf "$tmp"' EXIT INT TERM
$RUN "$PGBIN/initdb" -D "$tmp/data" -U keygate --auth=trust >/dev/null
PORT=
while [ -z "$PORT" ]; do
    p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000 ))
    ss -Hltn "sport = :$p" | grep -q . || PORT=$p
done
$NICE $RUN "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w -o "-p $PORT -k $tmp -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c fsync=off -c full_page_writes=off -c synchronous_commit=off" start >/dev/null
$RUN "$PGBIN/createdb" -h "$tmp" -p "$PORT" -U keygate keygate

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), nice ${BENCH_NICE:-0}"
echo "machine: $(nproc) CPU, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "sqlite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1), PostgreSQL $($PGBIN/postgres --version | awk '{print $3}') on 127.0.0.1 (TCP)"
KEYGATE_PLUGIN_PATH=$B/plugins:$B/bench $NICE "$B/bench/sql/bench_sql" --sqlite "$tmp/bench.db" \
    --pg "host=127.0.0.1 port=$PORT dbname=keygate user=keygate sslmode=disable" "$@"
