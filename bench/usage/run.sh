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
$NICE $RUN "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w -o "-p $PORT -k $tmp -c listen_addresses=127.0.0.1 -c shared_buffers=256MB" start >/dev/null
$RUN "$PGBIN/createdb" -h "$tmp" -p "$PORT" -U keygate keygate

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), nice ${BENCH_NICE:-0}"
echo "machine: $(nproc) CPU, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "sqlite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1), PostgreSQL $($PGBIN/postgres --version | awk '{print $3}') on 127.0.0.1 (TCP)"
$NICE "$B/bench/usage/bench_usage" --sqlite "$tmp/usage.db" \
    --pg "host=127.0.0.1 port=$PORT dbname=keygate user=keygate sslmode=disable" "$@"
