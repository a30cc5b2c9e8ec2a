#!/bin/sh
# The man pages that make built from man/*.scd: each formats with no word
# from `man --warnings` (groff's warnings included), and keygate(1) and
# keygated(8) keep up with the programs: every command, long and short
# option and environment variable that `keygate --help` and each
# command's own --help print (each must print its usage and exit 0) must
# appear in keygate(1), and every option, endpoint, signal and environment
# variable of `keygated --help` in keygated(8).  An option added to the
# code without a word in its page fails here.  Skipped (77) only when
# configure found no scdoc, so that the pages were not built.
set -u
B=${KEYGATE_BUILDDIR:-.}
S=${KEYGATE_SRCDIR:-.}
. "$S/tests/lib.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# Whether the pages are built is configure's choice (HAVE_MAN): automake
# leaves the man1 line uncommented in the Makefile only then.
if ! grep -q '^nodist_man1_MANS = ' "$B/Makefile"; then
    echo "# configure did not enable the man pages (no scdoc, or --without-man): not built"
    exit 77
fi
command -v man >/dev/null 2>&1 || { bad "man is not installed (apt-get install man-db)"; finish; }

pages="man/keygate.1 man/libkeygate.3 man/keygate.yaml.5 man/keygate-plugins.7"
[ -x "$B/tools/keygated" ] && pages="$pages man/keygated.8"

# 1. Every page formats without a warning.
export MANWIDTH=80 LC_ALL=C.UTF-8
for p in $pages; do
    if [ ! -s "$B/$p" ]; then
        bad "$p was not built"
        continue
    fi
    man --warnings -l "$B/$p" >/dev/null 2>"$T/err"
    rc=$?
    if [ $rc -eq 0 ] && [ ! -s "$T/err" ]; then
        ok "man --warnings -l $p: clean"
    else
        bad "man --warnings -l $p (exit $rc):"
        sed 's/^/#   /' "$T/err"
    fi
done

# The page's text with roff's escapes for fonts, hyphens and zero-width
# breaks removed, so that an option reads as on the terminal (but without
# the line breaks that formatting would add).
text() { sed -e 's/\\f[BIRP]//g' -e 's/\\&//g' -e 's/\\-/-/g' -e 's/\\(aq/'"'"'/g' "$1"; }
# has FILE WORD: WORD appears in FILE, not as part of a longer word
# (--secret must not be found in --secret-file).
has() { grep -q -E -e "(^|[^A-Za-z0-9_-])$2([^A-Za-z0-9_-]|\$)" "$1"; }
# Long and short options, and KEYGATE_ variables, named in a help text.
words() {
    grep -o -E -e '--[a-z][a-z0-9-]*' "$1"
    grep -o -E -e '(^|[ ,[])-[A-Za-z]([ ,]|$)' "$1" | tr -d ' ,['
    grep -o -E -e 'KEYGATE_[A-Z_]+' "$1"
}
# check PAGE WHAT HELPFILE: each word of HELPFILE is in PAGE.
check() {
    missing=
    for w in $(words "$3" | sort -u); do
        has "$T/page" "$w" || missing="$missing $w"
    done
    [ -z "$missing" ] && ok "$1 documents every option of $2" \
        || bad "$1 does not document, of $2:$missing"
}

# 2. keygate(1): the commands of keygate --help, and the options of it and
#    of each command's --help.
KG="$B/tools/keygate"
if [ -s "$B/man/keygate.1" ]; then
    text "$B/man/keygate.1" >"$T/page"
    "$KG" --help >"$T/help" 2>&1 || bad "keygate --help exits $?"
    check keygate.1 "keygate --help" "$T/help"
    # "  key create --name ...", "  plugins   plugins on ...": the words
    # before the first option, argument or double space.
    sed -n 's/^  \([a-z]\)/\1/p' "$T/help" | sed 's/  .*//' |
        awk '{ c = ""; for (i = 1; i <= NF && $i ~ /^[a-z]+$/; i++) c = c (c ? " " : "") $i; print c }' |
        sort -u >"$T/commands"
    [ "$(wc -l <"$T/commands")" -ge 10 ] || bad "found only these commands in keygate --help: $(tr '\n' ',' <"$T/commands")"
    missing=
    while read -r c; do
        grep -q -F -e "$c" "$T/page" || missing="$missing '$c'"
    done <"$T/commands"
    [ -z "$missing" ] && ok "keygate.1 documents the $(wc -l <"$T/commands") commands of keygate --help" \
        || bad "keygate.1 does not document the commands:$missing"
    # Each command's own --help (keygate key create --help, keygate policy
    # check --help...): its usage on standard output, exit 0, and its
    # options in the page.
    i=0
    while read -r c; do
        i=$((i + 1))
        # shellcheck disable=SC2086 # $c is words: "key create"
        "$KG" $c --help >"$T/help.$i" 2>"$T/help.err"
        rc=$?
        if [ $rc -ne 0 ] || ! grep -q '^usage: keygate' "$T/help.$i"; then
            bad "keygate $c --help: exit $rc, $(cat "$T/help.$i" "$T/help.err" | head -2 | tr '\n' ' ')"
            continue
        fi
        check keygate.1 "keygate $c --help" "$T/help.$i"
    done <"$T/commands"
fi

# 3. keygated(8): options, endpoints, signals, environment.
if [ -x "$B/tools/keygated" ]; then
    text "$B/man/keygated.8" >"$T/page"
    "$B/tools/keygated" --help >"$T/dhelp" 2>&1 || bad "keygated --help exits $?"
    check keygated.8 "keygated --help" "$T/dhelp"
    sed -n '/^Endpoints:/,/^$/p' "$T/dhelp" | grep -o -E '(^| )/[a-z]+' | tr -d ' ' | sort -u >"$T/endpoints"
    grep -o -E 'SIG[A-Z]+' "$T/dhelp" | sort -u >"$T/signals"
    [ -s "$T/endpoints" ] && [ -s "$T/signals" ] || bad "found no endpoint or signal in keygated --help"
    missing=
    for w in $(cat "$T/endpoints" "$T/signals"); do
        has "$T/page" "$w" || missing="$missing $w"
    done
    [ -z "$missing" ] && ok "keygated.8 documents the endpoints and signals: $(cat "$T/endpoints" "$T/signals" | tr '\n' ' ')" \
        || bad "keygated.8 does not document:$missing"
fi

finish
