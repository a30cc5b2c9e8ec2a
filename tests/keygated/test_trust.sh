#!/bin/sh
# Who may say who the client is (X-Forwarded-For), under the settings
# scripts/quickstart.sh starts keygated with (its command line, from
# scripts/quickstart-keygated.sh) and under keygated's own default: a
# gateway on this host (127.0.0.1, ::1) is believed; a client connecting
# from elsewhere on loopback (127.0.0.2) is judged on its own address,
# whatever X-Forwarded-For it sends (issue 16 item 14).
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"
. "$S/scripts/quickstart-keygated.sh"

POLICY=$S/conf/keygate.yaml
# Allowed only from 127.0.0.1 (what a spoofer would claim to be), and
# only from 127.0.0.2 (to see that a local gateway is still believed).
ONE=$(new_key only-one pro --allow-ip 127.0.0.1/32)
TWO=$(new_key only-two pro --allow-ip 127.0.0.2/32)
[ -n "$ONE" ] && [ -n "$TWO" ] && ok "keys created" || bad "keys"
curl -s -o /dev/null --max-time 5 --interface 127.0.0.2 "http://127.0.0.1:1/" 2>/dev/null
[ $? -eq 45 ] && { echo "cannot bind 127.0.0.2 (curl --interface)"; exit 77; }

# judge WHAT: the same four requests under the keygated just started.
judge() {
    expect_status "$1: from 127.0.0.2 claiming 127.0.0.1" 403 --interface 127.0.0.2 \
        -H "X-Forwarded-For: 127.0.0.1" -H "Authorization: Bearer $ONE" "$KGD/check"
    body_has "$1: judged on 127.0.0.2" '"code":"ip_not_allowed"'
    expect_status "$1: from 127.0.0.3 claiming 127.0.0.2" 403 --interface 127.0.0.3 \
        -H "X-Forwarded-For: 127.0.0.2" -H "Authorization: Bearer $TWO" "$KGD/check"
    expect_status "$1: the local gateway (127.0.0.1) is believed" 200 \
        -H "X-Forwarded-For: 127.0.0.2" -H "Authorization: Bearer $TWO" "$KGD/check"
    curl -s -o /dev/null -X DELETE "$KGD/leases/$(header_value X-Keygate-Lease)"
    expect_status "$1: from 127.0.0.1 itself" 200 -H "Authorization: Bearer $ONE" "$KGD/check"
    curl -s -o /dev/null -X DELETE "$KGD/leases/$(header_value X-Keygate-Lease)"
}

# shellcheck disable=SC2046
launch_keygated $(quickstart_keygated_args "$POLICY" 127.0.0.1:0 "$T")
judge "quickstart"
stop_keygated

start_keygated
judge "keygated's default"
stop_keygated
finish
