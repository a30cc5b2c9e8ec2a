#!/bin/sh
# test_packages.sh - the Debian packages, end to end, on this machine:
# built from the tracked files (git ls-files, so nothing of a local build
# leaks in) with dpkg-buildpackage, checked by lintian (an E: fails), their
# dependencies checked (the keygate command and the library pull no SQL,
# LDAP or Redis client), installed with apt-get, keygated started the way
# its installed unit says (no systemd runs in CI: ExecStartPre/ExecStart
# with the unit's Environment, EnvironmentFile and User), a key made with
# the installed CLI and checked over HTTP (401 without it, 200 with it),
# then everything purged and the machine left as it was.
#
# Not in `make check`: it installs packages system-wide, so it needs root
# (exit 77 otherwise) and a machine without keygate packages.  Run by
# scripts/test.sh after the suite; docs/releasing.md, "Debian packages".
set -u
S=$(cd "$(dirname "$0")/../.." && pwd)
. "$S/tests/lib.sh"
started=$(date +%s)

[ "$(id -u)" -eq 0 ] || { echo "test_packages.sh installs packages: run it as root"; exit 77; }
for t in git dpkg-buildpackage lintian fakeroot apt-get setpriv curl; do
    command -v "$t" >/dev/null || { echo "$t is missing: sh scripts/deps.sh --deb"; exit 1; }
done
PKGS=$(sed -n 's/^Package: //p' "$S/debian/control")
for p in $PKGS; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        echo "$p is installed already: this test would replace it, then purge it"
        echo "(apt-get purge $PKGS)"
        exit 1
    fi
done

T=$(mktemp -d "${TMPDIR:-/tmp}/keygate-deb.XXXXXX")
KGD_PID=
INSTALLED=
user_existed=no
id keygate >/dev/null 2>&1 && user_existed=yes
dpkg-query -W -f='${Package}\n' | sort >"$T/before"

# purge_added: purges what this test installed (the packages and any
# dependency that was not there before, and nothing else), listed in
# $T/added; its status is apt-get's.
purge_added() {
    INSTALLED=
    dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 !~ /^un/ { print $2 }' \
        | sort | comm -13 "$T/before" - >"$T/added"
    [ -s "$T/added" ] || return 0
    DEBIAN_FRONTEND=noninteractive apt-get purge -y $(cat "$T/added") >"$T/purge.log" 2>&1
}
# remove_user: Debian leaves system users behind on purge (their files
# may be elsewhere); the one this test made goes.
remove_user() {
    [ "$user_existed" = no ] || return 0
    user_existed=yes
    id keygate >/dev/null 2>&1 && deluser --quiet --system keygate >/dev/null 2>&1
    getent group keygate >/dev/null && delgroup --quiet --system keygate >/dev/null 2>&1
    return 0
}
cleanup() {
    if [ -n "$KGD_PID" ]; then
        kill -TERM "$KGD_PID" 2>/dev/null
        wait "$KGD_PID" 2>/dev/null
    fi
    [ -n "$INSTALLED" ] && purge_added
    remove_user
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- build ----------------------------------------------------------------
mkdir "$T/src"
(cd "$S" && git ls-files -z | tar --null -T - -cf -) | tar -C "$T/src" -xf - \
    || { echo "cannot copy the tracked files of $S"; exit 1; }
t0=$(date +%s)
if (cd "$T/src" && DEB_BUILD_OPTIONS="nocheck parallel=2" \
        dpkg-buildpackage -us -uc -b >"$T/build.log" 2>&1); then
    ok "dpkg-buildpackage -us -uc -b ($(($(date +%s) - t0)) s)"
else
    bad "dpkg-buildpackage failed:"; tail -40 "$T/build.log"; finish
fi
cd "$T"
deb() { ls "$T/$1"_*.deb; }   # the .deb of package $1
for p in $PKGS; do
    [ -f "$(deb "$p")" ] && ok "built $p" || bad "no .deb for $p"
done

# ---- lintian: errors fail, the rest is printed --------------------------------
# (initial-upload-closes-no-bugs: these packages go to no Debian archive,
# so there is no ITP bug to close.)
lintian --fail-on error --suppress-tags initial-upload-closes-no-bugs \
    "$T"/keygate_*.changes >"$T/lintian.out" 2>&1
lrc=$?
grep -v 'running with root privileges' "$T/lintian.out"
[ $lrc -eq 0 ] && ok "lintian: no error ($(grep -c '^W:' "$T/lintian.out") warnings)" \
    || bad "lintian found errors (exit $lrc)"

# ---- dependencies: each client library only where its plugin is -------------
depends() { dpkg-deb -f "$(deb "$1")" Depends; }
# lacks PACKAGE REGEX WHAT: PACKAGE's Depends match nothing of REGEX.
lacks() {
    l_d=$(depends "$1")
    if printf '%s\n' "$l_d" | grep -q -E "$2"; then
        bad "$1 depends on $3: $l_d"
    else
        ok "$1 depends on no $3"
    fi
}
PLUGIN_LIBS='libpq|libldap|libhiredis|libsqlite|keygate-plugin'
lacks libkeygate0 "$PLUGIN_LIBS|libmicrohttpd" "plugin package, plugin library or libmicrohttpd"
lacks keygate "$PLUGIN_LIBS|libmicrohttpd" "plugin package, plugin library or libmicrohttpd"
lacks keygated "$PLUGIN_LIBS" "plugin package or plugin library"
needs() {  # needs PACKAGE LIBRARY...
    n_p=$1; shift
    n_d=$(depends "$n_p")
    for n_l in "$@"; do
        case $n_d in *"$n_l"*) ok "$n_p depends on $n_l" ;; *) bad "$n_p lacks $n_l: $n_d" ;; esac
    done
}
needs keygate-plugin-sql libpq5 libsqlite3-0 libkeygate0
needs keygate-plugin-ldap libldap libkeygate0
needs keygate-plugin-redis libhiredis libkeygate0
needs keygated libmicrohttpd adduser libkeygate0
# From debian/libkeygate0.symbols: the version of the newest symbol used.
dpkg-deb --info "$(deb libkeygate0)" symbols >"$T/symbols" 2>/dev/null \
    && grep -q '^ kg_check@KEYGATE_0.1 ' "$T/symbols" && ok "libkeygate0 has a symbols file" \
    || bad "libkeygate0 has no symbols file"

# ---- install ----------------------------------------------------------------
debs=
for p in $PKGS; do debs="$debs $(deb "$p")"; done
INSTALLED=yes
if DEBIAN_FRONTEND=noninteractive apt-get install -y $debs >"$T/install.log" 2>&1; then
    ok "apt-get install ./*.deb"
else
    bad "apt-get install failed:"; tail -30 "$T/install.log"; finish
fi
id keygate >/dev/null 2>&1 && ok "the keygate system user exists" || bad "no keygate user"
st=$(stat -c '%U:%G %a' /var/lib/keygate 2>/dev/null)
[ "$st" = "keygate:keygate 700" ] && ok "/var/lib/keygate keygate:keygate 700" \
    || bad "/var/lib/keygate: '$st'"
dpkg-query -W -f='${Conffiles}\n' keygate | grep -q ' /etc/keygate/keygate.yaml ' \
    && ok "/etc/keygate/keygate.yaml is a conffile" || bad "keygate.yaml is no conffile"
dpkg-query -W -f='${Conffiles}\n' keygated | grep -q ' /etc/default/keygated ' \
    && ok "/etc/default/keygated is a conffile" || bad "/etc/default/keygated is no conffile"

# ---- keygated the way its unit starts it -----------------------------------
# The unit, then its drop-ins: later settings win, an empty ExecStart=
# clears the earlier ones (systemd.service(5)).
UNIT=/lib/systemd/system/keygated.service
[ -f "$UNIT" ] && ok "the unit is installed" || { bad "no $UNIT"; finish; }
ENV_NAMES=
U_USER=root
U_GROUP=
U_UMASK=0022
U_PRE=
U_START=
U_ENVFILES=
setenv() {  # setenv NAME=VALUE (a name of letters, digits and _ only)
    case ${1%%=*} in ''|[0-9]*|*[!A-Za-z0-9_]*) bad "unit: bad assignment '$1'"; return ;; esac
    eval "E_${1%%=*}=\${1#*=}"
    case " $ENV_NAMES " in *" ${1%%=*} "*) ;; *) ENV_NAMES="$ENV_NAMES ${1%%=*}" ;; esac
}
envlist() {  # envlist VALUE: Environment='s space-separated, "-quoted assignments
    e_v=$1
    while [ -n "$e_v" ]; do
        case $e_v in
            \"*) e_v=${e_v#\"}; setenv "${e_v%%\"*}"; e_v=${e_v#*\"} ;;
            *) setenv "${e_v%% *}"; case $e_v in *' '*) e_v=${e_v#* } ;; *) e_v= ;; esac ;;
        esac
        e_v=${e_v# }
    done
}
for f in "$UNIT" /lib/systemd/system/keygated.service.d/*.conf \
         /etc/systemd/system/keygated.service.d/*.conf; do
    [ -f "$f" ] || continue
    while IFS= read -r line; do
        case $line in
            Environment=*) envlist "${line#*=}" ;;
            EnvironmentFile=*) U_ENVFILES="$U_ENVFILES ${line#*=}" ;;
            User=*) U_USER=${line#*=} ;;
            Group=*) U_GROUP=${line#*=} ;;
            UMask=*) U_UMASK=${line#*=} ;;
            ExecStartPre=) U_PRE= ;;
            ExecStartPre=*) U_PRE=${line#*=} ;;
            ExecStart=) U_START= ;;
            ExecStart=*) U_START=${line#*=} ;;
        esac
    done <"$f"
done
# EnvironmentFile= settings override Environment= ones; "-": may be absent.
for f in $U_ENVFILES; do
    f=${f#-}
    [ -f "$f" ] || continue
    while IFS= read -r line; do
        case $line in '#'*|'') continue ;; esac
        v=${line#*=}
        case $v in \"*\") v=${v#\"}; v=${v%\"} ;; esac
        setenv "${line%%=*}=$v"
    done <"$f"
done
[ "$U_USER" = keygate ] && ok "the unit runs as keygate" || bad "the unit's user is '$U_USER'"
[ -n "$U_START" ] || { bad "no ExecStart in the unit"; finish; }
# The override an operator would put in /etc/default/keygated: the same
# arguments, on a port the kernel picks (printed by keygated).
case " ${E_KEYGATED_ARGS:-} " in
    *" --listen "*) E_KEYGATED_ARGS=$(printf '%s\n' "$E_KEYGATED_ARGS" | \
                        sed 's/--listen [^ ]*/--listen 127.0.0.1:0/') ;;
    *) bad "KEYGATED_ARGS has no --listen: '${E_KEYGATED_ARGS:-}'" ;;
esac

q() { printf "'%s' " "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
# cmdline EXEC-LINE: the command systemd would run, quoted for eval: as
# the unit's user, in a clean environment of the unit's variables, with
# ${NAME} one word and $NAME split at blanks (systemd.service(5)).
cmdline() {
    c=$(q setpriv)$(q "--reuid=$U_USER")$(q "--regid=${U_GROUP:-$U_USER}")$(q --init-groups)
    c="$c$(q env)$(q -i)$(q PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)"
    for n in $ENV_NAMES; do eval "c=\"\$c\$(q \"$n=\$E_$n\")\""; done
    set -f
    for w in ${1#-}; do
        case $w in
            \$\{*\}) n=${w#??}; n=${n%?}; eval "c=\"\$c\$(q \"\${E_$n:-}\")\"" ;;
            \$*) n=${w#?}; eval "for p in \${E_$n:-}; do c=\"\$c\$(q \"\$p\")\"; done" ;;
            *) c="$c$(q "$w")" ;;
        esac
    done
    set +f
    printf '%s\n' "$c"
}
umask "$U_UMASK"
cd /
if [ -n "$U_PRE" ]; then
    eval "$(cmdline "$U_PRE")" >"$T/pre.out" 2>&1 && ok "ExecStartPre: $U_PRE" \
        || { bad "ExecStartPre failed: $(cat "$T/pre.out")"; finish; }
fi
: >"$T/access.log"; : >"$T/keygated.err"
eval "exec $(cmdline "$U_START")" >"$T/access.log" 2>"$T/keygated.err" &
KGD_PID=$!
wait_for 200 grep -q 'listening on 127\.0\.0\.1:' "$T/keygated.err"
PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/keygated.err" | head -1)
[ -n "$PORT" ] && ok "keygated started from the unit's ExecStart" \
    || { bad "keygated did not start: $(cat "$T/keygated.err")"; finish; }
[ "$(ps -o user= -p "$KGD_PID")" = keygate ] && ok "keygated runs as keygate" \
    || bad "keygated runs as $(ps -o user= -p "$KGD_PID")"
KGD=http://127.0.0.1:$PORT

# ---- a key made with the installed CLI, checked over HTTP -------------------
# As an operator would: the shipped policy and state folder, as keygate.
KEY=$(setpriv --reuid=keygate --regid=keygate --init-groups env -i PATH=/usr/bin:/bin \
      keygate key create --name debian-ci --plan free 2>"$T/cli.err")
case $KEY in whizo_*) ok "keygate key create (installed CLI, shipped policy)" ;;
    *) bad "keygate key create: '$KEY' $(cat "$T/cli.err")" ;; esac
s=$(http_status "$KGD/check/v1/scrape")
[ "$s" = 401 ] && ok "no key: 401" || bad "no key: $s"
s=$(http_status "$KGD/check/v1/scrape" -H "Authorization: Bearer whizo_not_a_key")
[ "$s" = 401 ] && ok "a wrong key: 401" || bad "a wrong key: $s"
s=$(http_status "$KGD/check/v1/scrape" -H "Authorization: Bearer $KEY")
[ "$s" = 200 ] && ok "the new key: 200" || bad "the new key: $s $(cat "$T/keygated.err")"
# keygated writes its access log out every 200 ms.
wait_for 200 grep -q '"status":200' "$T/access.log" && ok "access log on stdout (--access-log -)" \
    || bad "no access log line: $(cat "$T/access.log")"

kill -TERM "$KGD_PID"
wait "$KGD_PID"
rc=$?
KGD_PID=
[ $rc -eq 0 ] && ok "keygated exits 0 on SIGTERM" || bad "keygated exited $rc"

# ---- purge: nothing left ----------------------------------------------------
cleanup_check() {
    purge_added && ok "apt-get purge ($(wc -l <"$T/added") packages)" \
        || { bad "apt-get purge failed:"; tail -20 "$T/purge.log"; }
    left=
    for f in /etc/keygate /etc/default/keygated /var/lib/keygate /lib/systemd/system/keygated.service \
             /lib/systemd/system/keygated.service.d /etc/systemd/system/multi-user.target.wants/keygated.service \
             /usr/lib/*/keygate /usr/bin/keygate /usr/sbin/keygated /usr/include/keygate; do
        [ -e "$f" ] && left="$left $f"
    done
    [ -z "$left" ] && ok "nothing left after the purge" || bad "left after the purge:$left"
    if [ "$user_existed" = no ]; then
        remove_user
        if id keygate >/dev/null 2>&1 || getent group keygate >/dev/null; then
            bad "the keygate user or group is still there"
        else
            ok "the keygate user and group removed"
        fi
    fi
}
cleanup_check
echo "test_packages.sh: $(($(date +%s) - started)) s"
finish
