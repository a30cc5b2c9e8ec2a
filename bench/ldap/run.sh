#!/bin/sh
# bench/ldap/run.sh - uncached ldap-store lookups against a local slapd
# holding N keys (default 100,000): lookups/s and latency, pool on and off.
#   make bench && sh bench/ldap/run.sh [N] [SECONDS]
# Run from the build directory (or set KEYGATE_BUILDDIR/KEYGATE_SRCDIR).
set -eu
N=${1:-100000}
SECS=${2:-5}
B=${KEYGATE_BUILDDIR:-$(pwd)}
KEYGATE_SRCDIR=${KEYGATE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
export KEYGATE_SRCDIR
KEYGATE_PLUGIN_PATH=${KEYGATE_PLUGIN_PATH:-$B/plugins}
export KEYGATE_PLUGIN_PATH
. "$KEYGATE_SRCDIR/tests/integration/slapd_env.sh"
KG_LDAP_TMP=$(mktemp -d)
export KG_LDAP_TMP
trap 'slapd_stop bench; rm -rf "$KG_LDAP_TMP"' EXIT

port=$(free_port)
slapd_setup bench "$port" conf
t0=$(date +%s)
"$B/bench/ldap/ldap_bench" gen "$N" "$KG_LDAP_TMP/keys.txt" "$KG_LDAP_TMP/keys.ldif"
slapd_load bench "$KG_LDAP_TMP/keys.ldif"
echo "loaded $N keys with slapadd in $(( $(date +%s) - t0 ))s"
slapd_start bench
echo "slapd $(/usr/sbin/slapd -VV 2>&1 | head -1 | sed 's/.*slapd //'); $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (tail latency on a busy machine is scheduling)"
"$B/bench/ldap/ldap_bench" run "$(cat "$KG_LDAP_TMP/bench/uri")" "$KG_LDAP_TMP/keys.txt" --seconds "$SECS" --threads 2 \
    --slapd-pid "$(cat "$KG_LDAP_TMP/bench/slapd.bgpid")"
