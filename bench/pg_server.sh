# bench/pg_server.sh - a throwaway PostgreSQL for the benchmarks, sourced
# by bench/sql/run.sh and bench/usage/run.sh after they set NICE and
# PG_BENCH_OPTS (server -c options).  Starts it in a temporary folder
# ($tmp) on 127.0.0.1 on a free port ($PORT), as `nobody` when run as
# root, with a database `keygate` owned by the role keygate (trust
# authentication); stops it and removes the folder on exit; prints the
# machine and versions.
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
$NICE $RUN "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w -o "-p $PORT -k $tmp -c listen_addresses=127.0.0.1 $PG_BENCH_OPTS" start >/dev/null
$RUN "$PGBIN/createdb" -h "$tmp" -p "$PORT" -U keygate keygate

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), nice ${BENCH_NICE:-0}"
echo "machine: $(nproc) CPU, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "sqlite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1), PostgreSQL $($PGBIN/postgres --version | awk '{print $3}') on 127.0.0.1 (TCP)"
