#!/bin/sh
# `make install` into a scratch DESTDIR, then check what it installed
# (headers, library, plugins under $(pkglibdir)/plugins, keygate.pc, the
# shipped policy under $(sysconfdir)/keygate), build the out-of-tree
# plugin in tests/fixtures/outoftree against the INSTALLED headers with
# `pkg-config keygate`, and load it with the INSTALLED command line:
# `keygate plugins` lists it and a policy using it decides requests.
set -u
B=${KEYGATE_BUILDDIR:-.}
S=${KEYGATE_SRCDIR:-.}
MAKE=${MAKE:-make}
command -v pkg-config >/dev/null 2>&1 || { echo "pkg-config is not installed"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
D="$T/dest"
fail=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); echo "not ok $n - $1"; fail=1; }

# Install.  MAKEFLAGS from an enclosing `make check` (jobserver, -k...)
# must not leak into this make.
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $MAKE -s -C "$B" install DESTDIR="$D" >"$T/install.log" 2>&1; then
    cat "$T/install.log"
    bad "make install DESTDIR=..."
    exit 1
fi
ok "make install DESTDIR=..."

# Where things went: ask the build's own variables.
var() { sed -n "s/^$1 = //p" "$B/Makefile" | head -1; }
prefix=$(var prefix)
eprefix=$(var exec_prefix | sed "s|\${prefix}|$prefix|g")
expand() {  # expand ${prefix} and ${exec_prefix} in a Makefile value
    printf '%s\n' "$1" | sed -e "s|\${exec_prefix}|$eprefix|g" -e "s|\${prefix}|$prefix|g"
}
libdir=$(expand "$(var libdir)")
includedir=$(expand "$(var includedir)")
bindir=$(expand "$(var bindir)")
sysconfdir=$(expand "$(var sysconfdir)")
plugindir="$libdir/keygate/plugins"
for f in "$includedir/keygate/keygate.h" "$includedir/keygate/plugin.h" \
         "$libdir/libkeygate.so" "$libdir/pkgconfig/keygate.pc" "$bindir/keygate" \
         "$plugindir/bearer.so" "$plugindir/header.so" "$plugindir/file.so" \
         "$sysconfdir/keygate/keygate.yaml"; do
    [ -e "$D$f" ] && ok "installed $f" || bad "not installed: $f ($(cd "$D" && find . | head -50))"
done
# Only the public headers are installed.
extra=$(find "$D$includedir" -type f | grep -v -e '/keygate/keygate.h$' -e '/keygate/plugin.h$')
[ -z "$extra" ] && ok "only the public headers" || bad "extra headers: $extra"
# The library exports only kg_ names.
if command -v nm >/dev/null 2>&1; then
    so=$(ls "$D$libdir"/libkeygate.so.* | head -1)
    bad_syms=$(nm -D --defined-only "$so" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^kg_' | grep -v '^_' || true)
    [ -z "$bad_syms" ] && ok "libkeygate exports only kg_ symbols" || bad "exported: $bad_syms"
fi
# The test fixtures are not installed as plugins.
[ ! -e "$D$plugindir/scripted.so" ] && ok "test fixtures are not installed" || bad "fixtures installed"

# Build the plugin as an outsider: only pkg-config and the installed tree.
export PKG_CONFIG_PATH="$D$libdir/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$D"
cflags=$(pkg-config --cflags keygate)
case "$cflags" in
    *"$D$includedir"*) ok "pkg-config --cflags points at the installed headers" ;;
    *) bad "pkg-config --cflags: $cflags" ;;
esac
[ "$(pkg-config --variable=plugindir keygate)" = "$D$plugindir" ] && ok "pkg-config plugindir" \
    || bad "plugindir: $(pkg-config --variable=plugindir keygate)"
mkdir -p "$T/oot"
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $MAKE -s -C "$T/oot" -f "$S/tests/fixtures/outoftree/Makefile" \
        SRCDIR="$S/tests/fixtures/outoftree" CFLAGS="-O2 -g" >"$T/oot.log" 2>&1 && [ -f "$T/oot/oothello.so" ]; then
    ok "out-of-tree plugin builds against the installed headers"
else
    cat "$T/oot.log"
    bad "out-of-tree plugin build"
    exit 1
fi

# The installed command line loads it.
KG="$D$bindir/keygate"
export LD_LIBRARY_PATH="$D$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export KEYGATE_PLUGIN_PATH="$T/oot:$D$plugindir"
out=$("$KG" plugins 2>&1); rc=$?
[ $rc -eq 0 ] && ok "installed keygate plugins: exit 0" || bad "plugins exit $rc: $out"
printf '%s\n' "$out" | grep -q '^oothello  *account  *1.0' && ok "lists the out-of-tree plugin" || bad "plugins: $out"
printf '%s\n' "$out" | grep -q '^bearer  *credential' && ok "lists the installed plugins" || bad "plugins: $out"

mkdir -p "$T/state"
cat >"$T/policy.yaml" <<EOF
plugin_path: ["$T/oot"]
credential: [{module: bearer}]
keystore: [{module: file, options: {path: "$T/state/keys.yaml"}}]
plans:
  free:
    account:
      - {module: oothello, control: requisite, options: {methods: [GET, HEAD]}}
EOF
KEYGATE_PLUGIN_PATH="$D$plugindir"   # oothello only through plugin_path now
out=$("$KG" policy check "$T/policy.yaml" 2>&1) && ok "a policy using it loads" || bad "policy check: $out"
out=$("$KG" policy explain "$T/policy.yaml" 2>&1)
printf '%s\n' "$out" | grep -q oothello && ok "explain shows it" || bad "explain: $out"
KEY=$("$KG" --config "$T/policy.yaml" key create --name oot --plan free 2>/dev/null)
out=$("$KG" --config "$T/policy.yaml" check --header "Authorization: Bearer $KEY" --method HEAD 2>&1)
[ $? -eq 0 ] && ok "it allows HEAD" || bad "HEAD: $out"
out=$("$KG" --config "$T/policy.yaml" check --header "Authorization: Bearer $KEY" --method POST 2>&1); rc=$?
[ $rc -eq 1 ] && printf '%s\n' "$out" | grep -q 'denied 403 insufficient_permissions.*by=account:oothello' \
    && ok "it denies POST" || bad "POST ($rc): $out"
# An unknown option is reported by the core at its line and column.
sed 's/methods: \[GET, HEAD\]/methds: [GET]/' "$T/policy.yaml" >"$T/typo.yaml"
out=$("$KG" policy check "$T/typo.yaml" 2>&1); rc=$?
[ $rc -eq 2 ] && printf '%s\n' "$out" | grep -q "typo.yaml:7:.*unknown option 'methds' for plugin oothello" \
    && ok "its unknown option is reported with line:column" || bad "typo ($rc): $out"

echo "1..$n"
[ $fail -eq 0 ] && echo "$n passed, 0 failed" || echo "some of $n failed"
exit $fail
