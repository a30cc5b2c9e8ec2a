#!/bin/bash
# Accounts across two keygated instances that share their limits in a
# real redis-server (started here on a free loopback port, in the test's
# folder): a Free account's three keys get exactly the plan's 10 an hour
# in total when 16 clients hammer both instances at once, and exactly 1
# request in flight across keys and instances; a lease released at the
# instance that gave it frees the account's slot for the other.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"
for bin in redis-server redis-cli; do
    command -v $bin >/dev/null 2>&1 || { echo "SKIP: $bin is not installed"; exit 77; }
done
command -v xargs >/dev/null || { echo "xargs is needed"; exit 1; }

redis_start "$T/redis" || { echo "redis-server did not start"; exit 1; }
RPORT=$REDIS_PORT
stop_redis() { redis_stop "$T/redis"; }
trap 'stop_redis; lib_cleanup' EXIT

POLICY=$T/policy.yaml
cat >"$POLICY" <<YAML
version: 1
key_prefix: whizo
credential: [{module: bearer}]
keystore:
  - {module: file, options: {path: keys.yaml, refresh: 1s}, cache: {ttl: 2s, negative_ttl: 1s}}
plans:
  free:
    limit:
      - module: fixed_window
        control: requisite
        options: {name: hour, count: 10, window: 1h, backend: redis, redis: {endpoints: ["127.0.0.1:$RPORT"]}}
  conc:
    limit:
      - module: concurrency
        control: requisite
        options: {name: concurrency, count: 1, backend: redis, redis: {endpoints: ["127.0.0.1:$RPORT"]}}
YAML
KG="$KEYGATE --config $POLICY"

A=$($KG account create --name Acme --plan free 2>/dev/null)
C=$($KG account create --name Conc --plan conc 2>/dev/null)
for i in 1 2 3; do
    eval "A$i=\$($KG key create --account $A --name a$i 2>/dev/null)"
    eval "C$i=\$($KG key create --account $C --name c$i 2>/dev/null)"
done
[ -n "$A3" ] && [ -n "$C3" ] && ok "two accounts of three keys" || bad "keys: A3=$A3 C3=$C3"

# Two instances on one policy (one key file, one Redis).
start_keygated
P1=$KGD_PID; U1=$KGD; KGD_PID=
cp "$T/keygated.err" "$T/keygated1.err"
start_keygated
P2=$KGD_PID; U2=$KGD
trap 'kill $P1 2>/dev/null; stop_redis; lib_cleanup' EXIT
[ "$U1" != "$U2" ] && ok "two keygated instances ($U1, $U2)" || bad "one instance twice"

# ---- 10 an hour across three keys, two instances, 16 clients -----------------
# 48 requests, 16 at a time, each to instance (n mod 2) with key (n mod 3).
: >"$T/jobs"
for n in $(seq 0 47); do
    eval "k=\$A$((n % 3 + 1))"
    if [ $((n % 2)) -eq 0 ]; then u=$U1; else u=$U2; fi
    printf '%s %s\n' "$u" "$k" >>"$T/jobs"
done
xargs -P 16 -L 1 sh -c 'curl -s -o /dev/null -w "%{http_code}\n" --max-time 10 -H "Authorization: Bearer $1" "$0/check"' \
    <"$T/jobs" >"$T/codes"
allowed=$(grep -c '^200$' "$T/codes")
limited=$(grep -c '^429$' "$T/codes")
[ "$allowed" -eq 10 ] && [ "$limited" -eq 38 ] \
    && ok "16 clients, 2 instances, 3 keys: exactly 10 allowed, 38 limited" \
    || bad "allowed $allowed, limited $limited of 48: $(sort "$T/codes" | uniq -c | tr '\n' ' ')"
for u in "$U1" "$U2"; do
    for k in "$A1" "$A3"; do
        expect_status "after the quota, $(printf '%.8s' "$k") at ${u##*:}" 429 -H "Authorization: Bearer $k" "$u/check"
    done
done

# ---- 1 in flight across keys and instances ----------------------------------
# 16 clients at once, leases held: exactly one 200.
: >"$T/jobs"
for n in $(seq 0 15); do
    eval "k=\$C$((n % 3 + 1))"
    if [ $((n % 2)) -eq 0 ]; then u=$U1; else u=$U2; fi
    printf '%s %s\n' "$u" "$k" >>"$T/jobs"
done
xargs -P 16 -L 1 sh -c 'c=$(curl -s -o /dev/null -D - -w "code=%{http_code}\n" --max-time 10 -H "Authorization: Bearer $1" "$0/check" | tr -d "\r"); printf "%s %s\n" "$0" "$(printf "%s\n" "$c" | sed -n "s/^code=//p;s/^X-Keygate-Lease: /lease=/Ip" | tr "\n" " ")"' \
    <"$T/jobs" >"$T/inflight"
held=$(grep -c ' 200 ' "$T/inflight")
[ "$held" -eq 1 ] && ok "16 clients on two instances: exactly 1 in flight" \
    || bad "in flight: $held: $(cat "$T/inflight" | tr '\n' '|')"
line=$(grep ' 200 ' "$T/inflight" | head -1)
gave=${line%% *}
lease=$(printf '%s\n' "$line" | sed -n 's/.*lease=\([^ ]*\).*/\1/p')
if [ "$gave" = "$U1" ]; then other=$U2; else other=$U1; fi
expect_status "while it is held, the other instance" 429 -H "Authorization: Bearer $C2" "$other/check"
expect_status "the lease released at the instance that gave it" 204 -X DELETE "$gave/leases/$lease"
expect_status "then the other instance admits one" 200 -H "Authorization: Bearer $C3" "$other/check"
l=$(header_value X-Keygate-Lease)
[ -n "$l" ] && curl -s -o /dev/null -X DELETE "$other/leases/$l"

kill -TERM "$P1"; wait "$P1"; rc=$?
[ "$rc" -eq 0 ] && ok "instance 1 exits 0" || bad "instance 1 exited $rc"
stop_keygated
finish
