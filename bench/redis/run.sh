#!/bin/bash
# bench/redis/run.sh - decisions per second and p99 through the Redis
# limiter backend, beside redis-benchmark of the same single EVALSHA on
# the same server (the floor: what Redis itself can do for that script).
#
#   bench/redis/run.sh [BUILDDIR] [DECISIONS] [CLIENTS]
#
# Starts its own redis-server on a free 127.0.0.1 port in a temporary
# folder (stopped on exit).  The plan is the shipped Free stack (hour +
# day + concurrency, all in Redis) with limits too high to deny, so every
# decision is one EVALSHA that writes three keys.  Leases are held (not
# released) so that only decisions are timed.
set -eu
S=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "${1:-$S}" && pwd)
N=${2:-200000}
C=${3:-64}
export KEYGATE_PLUGIN_PATH="$B/plugins"
D=$(mktemp -d)
trap 'redis-cli -p "$P" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$D"' EXIT
for _ in $(seq 20); do
    P=$((20000 + RANDOM % 30000))
    redis-cli -p "$P" ping >/dev/null 2>&1 && continue
    redis-server --port "$P" --bind 127.0.0.1 --save '' --appendonly no --dir "$D" \
        --daemonize yes --logfile "$D/log" --pidfile "$D/pid" >/dev/null 2>&1 || continue
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$P" ping 2>/dev/null)" = PONG ] && break 2
        sleep 0.05
    done
done
cat > "$D/bench.yaml" <<YAML
version: 1
key_prefix: whizo
credential:
  - {module: bearer, control: required}
keystore:
  - {module: file, control: required, options: {path: $D/keys.yaml}}
plans:
  free:
    limit:
      - module: fixed_window
        control: requisite
        options: {name: hour, count: 1000000000, window: 1h, backend: redis,
                  redis: &r {endpoints: [127.0.0.1:$P], pool_size: $C}}
      - module: fixed_window
        control: requisite
        options: {name: day, count: 1000000000, window: 1d, backend: redis, redis: *r}
      - module: concurrency
        control: requisite
        options: {name: concurrency, count: 1000000000, backend: redis, redis: *r}
YAML
KEY=$("$B/tools/keygate" --config "$D/bench.yaml" key create --name bench --plan free 2>/dev/null)
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$P; $(nproc) CPUs; $N decisions, $C clients"

# keygate: warm up (connections, script load), then time.
out=$(printf 'bench 0 2000 %s hold\nbench 0 %s %s hold\n' "$C" "$N" "$C" \
      | "$B/tests/redis/kg_hammer" "$D/bench.yaml" "$KEY" | tail -1)
kg_rate=$(printf '%s\n' "$out" | sed -n 's/.*per_second=\([0-9]*\).*/\1/p')
kg_p50=$(printf '%s\n' "$out" | sed -n 's/.*p50_us=\([0-9]*\).*/\1/p')
kg_p99=$(printf '%s\n' "$out" | sed -n 's/.*p99_us=\([0-9]*\).*/\1/p')
allowed=$(printf '%s\n' "$out" | sed -n 's/.*allowed=\([0-9]*\).*/\1/p')
[ "$allowed" = "$N" ] || echo "warning: only $allowed of $N decisions were allowed: $out"

# The floor: the same script, three keys of one hash tag, same arguments.
SHA=$(redis-cli -p "$P" -x script load < "$S/plugins/common/limits.lua")
rb=$(redis-benchmark -p "$P" -c "$C" -n "$N" -q --precision 3 EVALSHA "$SHA" 3 \
     'kg:{bench}:hour:f' 'kg:{bench}:day:f' 'kg:{bench}:concurrency:c' a \
     f 1000000000 3600 1000000000 300 x f 1000000000 86400 1000000000 300 x \
     c 1000000000 1 1000000000 300 lease-__rand_int__ 2>&1 | tr '\r' '\n' | grep 'requests per second' | tail -1)
rb_rate=$(printf '%s\n' "$rb" | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | cut -d. -f1)
rb_p99=$(printf '%s\n' "$rb" | sed -n 's/.*p50=\([0-9.]*\) msec.*/\1/p')
rb_full=$(redis-benchmark -p "$P" -c "$C" -n "$N" --precision 3 EVALSHA "$SHA" 3 \
     'kg:{bench}:hour:f' 'kg:{bench}:day:f' 'kg:{bench}:concurrency:c' a \
     f 1000000000 3600 1000000000 300 x f 1000000000 86400 1000000000 300 x \
     c 1000000000 1 1000000000 300 lease-__rand_int__ 2>&1 | tr '\r' '\n')
rb_p99=$(printf '%s\n' "$rb_full" | awk '/latency summary/ {getline; getline; print $5; exit}')
rb_rate2=$(printf '%s\n' "$rb_full" | awk '/throughput summary/ {print $3; exit}' | cut -d. -f1)
[ -n "$rb_rate2" ] && rb_rate=$rb_rate2

printf '%-34s %12s %10s %10s\n' "" "per second" "p50" "p99"
printf '%-34s %12s %8s us %8s us\n' "keygate kg_check, redis backend" "$kg_rate" "$kg_p50" "$kg_p99"
printf '%-34s %12s %10s %7s ms\n' "redis-benchmark EVALSHA (floor)" "$rb_rate" "" "$rb_p99"
awk -v a="$kg_rate" -v b="$rb_rate" 'BEGIN { if (b > 0) printf "ratio: %.2fx of the floor (goal >= 0.7x)\n", a / b }'
