#!/bin/sh
# Reload under load: curl drives 20000 checks over 8 parallel keep-alive
# connections while SIGHUP is sent every 20 ms (every fifth time with a
# broken policy in place).  Wanted: every check answered 200 (no request
# dropped or failed across a swap), the limiter counted every one of them
# exactly (state lives in the context, not the policy), the broken
# policies were refused and logged, and keygated exits cleanly.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

POLICY=$T/policy.yaml
cat >"$T/good.yaml" <<'YAML'
version: 1
credential:
  - {module: bearer, control: required}
keystore:
  - {module: file, control: required, options: {path: keys.yaml}}
plans:
  bulk:
    limit:
      - {module: fixed_window, control: requisite, options: {name: day, count: 1000000, window: 1d}}
      - {module: sliding_window, control: requisite, options: {name: slide, count: 1000000, window: 1h}}
YAML
printf 'version: 1\ncredential:\n  - {module: bearer, control: required}\nplans: [oops\n' >"$T/bad.yaml"
# A mapping key whose ${ expansion fails once crashed the parser, and with it
# keygated on SIGHUP: every other broken policy is this one.
printf 'a: 1\n${b: 2\n' >"$T/crash.yaml"
cp "$T/good.yaml" "$POLICY"
KEY=$(new_key bulk bulk)
start_keygated --threads 2

TOTAL=20000
i=0
: >"$T/urls"
while [ $i -lt $TOTAL ]; do echo "url = \"$KGD/check/v1/scrape\""; echo 'output = "/dev/null"'; i=$((i + 1)); done >"$T/urls"
bg_start curl -s -Z --parallel-max 8 -K "$T/urls" -H "Authorization: Bearer $KEY" \
    -w '%{http_code}\n' >"$T/codes" 2>"$T/curl.err"
LOAD=$BG_PID

hups=0
bad_hups=0
while kill -0 $LOAD 2>/dev/null && [ $hups -lt 200 ]; do
    hups=$((hups + 1))
    if [ $((hups % 5)) -eq 0 ]; then
        if [ $((hups % 10)) -eq 0 ]; then cp "$T/crash.yaml" "$T/next.yaml"
        else cp "$T/bad.yaml" "$T/next.yaml"; fi
        bad_hups=$((bad_hups + 1))
    else
        cp "$T/good.yaml" "$T/next.yaml"
    fi
    mv "$T/next.yaml" "$POLICY"
    kill -HUP "$KGD_PID"
    sleep 0.02
done
bg_wait "$LOAD"
cp "$T/good.yaml" "$POLICY"
n0=$(grep -c "reloaded policy" "$T/keygated.err")
kill -HUP "$KGD_PID"
reloaded_again() { [ "$(grep -c "reloaded policy" "$T/keygated.err")" -gt "$n0" ]; }
wait_for 200 reloaded_again

n200=$(grep -c '^200$' "$T/codes")
nall=$(wc -l <"$T/codes")
[ "$hups" -ge 5 ] && ok "$hups SIGHUPs sent during the load" || bad "only $hups SIGHUPs: the load ended too soon"
[ "$nall" -eq $TOTAL ] && ok "all $TOTAL requests answered" || bad "$nall of $TOTAL answered: $(head -3 "$T/curl.err")"
[ "$n200" -eq $TOTAL ] && ok "all $TOTAL allowed (zero failed)" || bad "$n200 of $TOTAL were 200: $(sort "$T/codes" | uniq -c | tr '\n' ' ')"
expect_status "whoami after the storm" 200 -H "Authorization: Bearer $KEY" "$KGD/whoami"
body_has "day counter counted every request" "{\"name\":\"day\",\"limit\":1000000,\"remaining\":$((1000000 - TOTAL)),"
body_has "sliding window counter too" "{\"name\":\"slide\",\"limit\":1000000,\"remaining\":$((1000000 - TOTAL)),"
expect_status "metrics" 200 "$KGD/metrics"
okr=$(sed -n 's/^keygated_reloads_total{result="ok"} //p' "$T/b")
badr=$(sed -n 's/^keygated_reloads_total{result="failed"} //p' "$T/b")
[ "${okr:-0}" -ge 3 ] && ok "$okr reloads succeeded" || bad "reloads ok: $okr"
[ "${badr:-0}" -ge 1 ] && ok "$badr broken policies refused" || bad "reloads failed: $badr"
grep -q "reload failed; the previous policy keeps serving: .*policy.yaml:2:1: unterminated" "$T/keygated.err" \
    && ok "the typo'd mapping key was refused at 2:1" || bad "no 2:1 refusal in: $(grep reload "$T/keygated.err" | head -3)"
grep -q "reload failed; the previous policy keeps serving: .*policy.yaml:[0-9]*:[0-9]*: " "$T/keygated.err" \
    && ok "the refusal says where" || bad "no located reload error in: $(grep reload "$T/keygated.err" | head -3)"
body_has "decisions counted" "keygated_decisions_total{code=\"ok\",plan=\"bulk\"} $((TOTAL + 1))"
stop_keygated
finish
