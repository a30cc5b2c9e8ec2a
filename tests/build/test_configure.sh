#!/bin/sh
# configure, run in a folder that holds a core/ folder (as the source tree
# does: keygate's core/), says nothing about it.  Autoconf's tests clean up
# with `rm -f core ...`, which printed "rm: cannot remove 'core': Is a
# directory" about 30 times and cut the exit trap's clean-up short
# (m4/kg_rm_core.m4).  The configure output is also checked by
# scripts/test.sh.
set -u
S=${KEYGATE_SRCDIR:-.}
S=$(cd "$S" && pwd)
# A source tree configured in place refuses a second build elsewhere.
if [ -f "$S/config.status" ]; then
    echo "SKIP: $S is configured in place"
    exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir "$T/core"
fail=0
if ! (cd "$T" && "$S/configure" --disable-dependency-tracking --without-microhttpd \
        --without-sqlite --without-pq --without-ldap --without-hiredis) >"$T/out" 2>&1; then
    cat "$T/out"
    echo "FAIL - configure failed"
    exit 1
fi
if grep -q "cannot remove" "$T/out"; then
    echo "FAIL - configure printed rm errors: $(grep -c 'cannot remove' "$T/out") lines:"
    grep "cannot remove" "$T/out" | head -3
    fail=1
else
    echo "ok - configure printed no rm error"
fi
if [ -d "$T/core" ]; then echo "ok - core/ is still there"; else echo "FAIL - core/ is gone"; fail=1; fi
# The exit trap's clean-up ran to its end.
left=$(cd "$T" && ls -d conftest* confdefs* 2>/dev/null)
if [ -z "$left" ]; then echo "ok - no conftest file left"; else echo "FAIL - left behind: $left"; fail=1; fi
exit $fail
