#!/bin/sh
# The library's ABI as a product: what the public headers declare, what
# libkeygate.map versions and what the built libkeygate.so exports must be
# the same set of kg_ names, every export carrying a KEYGATE_ version, the
# soname must be the one the libtool version gives, and the headers' version
# must be configure's.  Adding a function to a header without adding it to
# the map hides it from embedders; removing one from the code leaves the map
# promising a symbol that is gone: both fail here.  docs/releasing.md.
set -u
B=${KEYGATE_BUILDDIR:-.}
S=${KEYGATE_SRCDIR:-.}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); echo "not ok $n - $1"; fail=1; }

SO=$(ls "$B"/.libs/libkeygate.so.*.*.* 2>/dev/null | head -1)
[ -n "$SO" ] || { echo "not ok 1 - no built libkeygate.so.X.Y.Z under $B/.libs"; exit 1; }

# Declared: global symbols of default visibility in the library's objects
# (the public headers push default visibility; the rest is hidden).
for o in "$B"/core/.libs/libkeygate_la-*.o; do
    readelf -sW "$o" | awk '$5 == "GLOBAL" && $6 == "DEFAULT" && $7 != "UND" { print $8 }'
done | sort -u >"$T/declared"
# Versioned: the names in the map's global: lists.
sed -e 's|/\*.*\*/||' "$S/libkeygate.map" | tr -d ' \t' |
    grep -E '^kg_[A-Za-z0-9_]*;$' | tr -d ';' | sort -u >"$T/map"
# Exported: dynamic symbols of the built library, with their versions.
readelf --dyn-syms -W "$SO" | awk '$7 != "UND" && $5 == "GLOBAL" { print $8 }' |
    grep -v '^KEYGATE_' | sort -u >"$T/exported_v"
sed 's/@.*//' "$T/exported_v" | sort -u >"$T/exported"

[ -s "$T/declared" ] && ok "$(wc -l <"$T/declared") symbols declared public" || bad "found no public symbol in the objects"
if diff -u "$T/map" "$T/declared" >"$T/d1"; then
    ok "every public declaration is in libkeygate.map, and nothing else"
else
    bad "libkeygate.map and the public declarations differ (+ declared, not in the map; - in the map, not declared):"
    sed -n '3,$p' "$T/d1" | grep '^[-+]' | sed 's/^/#   /'
fi
if diff -u "$T/map" "$T/exported" >"$T/d2"; then
    ok "the library exports exactly the map's symbols"
else
    bad "libkeygate.so's exports and the map differ:"
    sed -n '3,$p' "$T/d2" | grep '^[-+]' | sed 's/^/#   /'
fi
# The Debian symbols file lists the same names (dpkg-gensymbols -c4 would
# fail the package build much later otherwise).
if [ -f "$S/debian/libkeygate0.symbols" ]; then
    sed -n 's/^ \(kg_[A-Za-z0-9_]*\)@KEYGATE_.*/\1/p' "$S/debian/libkeygate0.symbols" | sort -u >"$T/deb"
    if diff -u "$T/map" "$T/deb" >"$T/d3"; then
        ok "debian/libkeygate0.symbols lists the map's symbols"
    else
        bad "debian/libkeygate0.symbols and the map differ:"
        sed -n '3,$p' "$T/d3" | grep '^[-+]' | sed 's/^/#   /'
    fi
fi
unversioned=$(grep -v '@KEYGATE_' "$T/exported_v" | head -5)
[ -z "$unversioned" ] && ok "every export carries a KEYGATE_ version" || bad "unversioned exports: $unversioned"
leaked=$(grep -v '^kg_' "$T/exported" | head -5)
[ -z "$leaked" ] && ok "only kg_ names are exported" || bad "exported without the kg_ prefix: $leaked"

# The soname follows the libtool version (current - age).
lt=$(sed -n 's/^KG_LT_VERSION = //p' "$B/Makefile")
cur=${lt%%:*}; age=${lt##*:}
soname=$(readelf -dW "$SO" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libkeygate.so.$((cur - age))" ] && ok "soname $soname from -version-info $lt" \
    || bad "soname '$soname', but -version-info $lt gives libkeygate.so.$((cur - age))"

# The headers' version is configure's (one source: configure.ac).
pv=$(sed -n 's/^PACKAGE_VERSION = //p' "$B/Makefile")
cat >"$T/v.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <keygate/keygate.h>
int main(void)
{
    printf("%d.%d.%d %s %s\n", KG_VERSION_MAJOR, KG_VERSION_MINOR, KG_VERSION_PATCH,
           KG_VERSION_STRING, kg_version());
    return 0;
}
C
if ${CC:-cc} -I"$B/include" -I"$S/include" -o "$T/v" "$T/v.c" -L"$B/.libs" -lkeygate 2>"$T/cc.err"; then
    got=$(LD_LIBRARY_PATH="$B/.libs" "$T/v")
    [ "$got" = "$pv $pv $pv" ] && ok "headers and library say $pv, as configure.ac" \
        || bad "versions disagree: '$got', configure says $pv"
else
    bad "a program including keygate.h does not build: $(head -3 "$T/cc.err")"
fi
echo "1..$n"
exit $fail
