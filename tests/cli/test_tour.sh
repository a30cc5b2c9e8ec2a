#!/bin/sh
# The README's "5-minute tour", literally: its ```sh block is taken out of
# README.md and run, command by command, from a folder laid out as the
# README's reader has it after ./scripts/quickstart.sh (conf/ of the
# sources, _build/ the build quickstart.sh makes), with none of the
# test suite's KEYGATE_* settings.  Then what the tour's comments claim is
# checked: 10 allowed then a 429 with Retry-After, 401s with
# WWW-Authenticate, 200 then two 403s for the Enterprise key, rotate and
# revoke, exit 2 with file:line:column for the broken policy; and every
# other command exits 0 (a "not found" fails the test).
set -u
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"   # as test_cli.sh says
export ASAN_OPTIONS
B=$(cd "${KEYGATE_BUILDDIR:-.}" && pwd)
S=$(cd "${KEYGATE_SRCDIR:-.}" && pwd)
. "$S/tests/lib.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
unset KEYGATE_CONFIG KEYGATE_STATE_DIR KEYGATE_PLUGIN_PATH

# The tour says where quickstart.sh builds: check that it still does.
grep -q '^BUILD=\$ROOT/_build$' "$S/scripts/quickstart.sh" && ok "quickstart.sh builds in _build/" \
    || bad "quickstart.sh no longer builds in _build/: the tour's paths are wrong"

# The block: the first ```sh after the tour's title, up to its ```.
awk '/^## A 5-minute tour/ {t = 1} t && /^```sh$/ {b = 1; next} b && /^```$/ {exit} b' \
    "$S/README.md" >"$T/tour.sh"
[ -s "$T/tour.sh" ] && ok "README.md has the tour's block ($(wc -l <"$T/tour.sh") lines)" \
    || { bad "no \`\`\`sh block under '## A 5-minute tour' in README.md"; finish; }

# Each command (continuation lines joined, comments and blank lines
# dropped) between markers that give its number, its text and its status.
# The command stands alone on its line: a trailing '# 403' comments out
# nothing of ours.
awk '
    /^[ \t]*#/ || /^[ \t]*$/ { if (cmd == "") next }
    {
        line = $0
        if (cmd != "") cmd = cmd "\n" line; else cmd = line
        if (line ~ /\\$/) next
        n++
        txt = cmd; gsub(/\n/, " ", txt); gsub(/'\''/, "", txt)
        printf "echo '\''@@begin %d %s'\''\n%s\necho \"@@rc %d $?\"\n", n, txt, cmd, n
        cmd = ""
    }' "$T/tour.sh" >"$T/run.sh"

# The reader's folder after quickstart.sh: the sources' conf/, the build
# as _build/ (whatever folder this build is in).
mkdir -p "$T/root" "$T/tmp"
ln -s "$S/conf" "$T/root/conf"
ln -s "$B" "$T/root/_build"
(cd "$T/root" && TMPDIR="$T/tmp" sh "$T/run.sh") >"$T/out" 2>&1

# out_of TEXT: the output of the first command whose text holds TEXT;
# rc_of TEXT: its exit status.
num_of() { grep -F -- "$1" "$T/out" | sed -n 's/^@@begin \([0-9]*\) .*/\1/p' | head -1; }
out_of() {
    k=$(num_of "$1")
    [ -n "$k" ] || return 0
    awk -v k="$k" '$0 ~ "^@@begin " k " " {p = 1; next} $0 ~ "^@@rc " k " " {exit} p' "$T/out"
}
rc_of() { k=$(num_of "$1"); [ -n "$k" ] && sed -n "s/^@@rc $k \([0-9]*\)$/\1/p" "$T/out"; }
# expect TEXT RC [PATTERN...]: the command holding TEXT exited RC and its
# output matches each PATTERN (grep -E).
expect() {
    e_txt=$1; e_rc=$2; shift 2
    [ -n "$(num_of "$e_txt")" ] || { bad "the tour has no command with '$e_txt'"; return; }
    e_got=$(rc_of "$e_txt")
    [ "$e_got" = "$e_rc" ] || { bad "'$e_txt': exit $e_got, the tour says $e_rc: $(out_of "$e_txt")"; return; }
    for e_p in "$@"; do
        out_of "$e_txt" | grep -q -E -- "$e_p" || { bad "'$e_txt': no '$e_p' in: $(out_of "$e_txt")"; return; }
    done
    ok "'$e_txt': exit $e_rc${1:+, $*}"
}

ncmd=$(grep -c '^@@begin ' "$T/out")
[ "$ncmd" -ge 15 ] && ok "the tour ran $ncmd commands" || bad "the tour ran $ncmd commands: $(cat "$T/out")"
expect 'policy explain' 0 'credential'
expect 'key create --name "my laptop" --plan free' 0
expect 'key list' 0 'my laptop' ' free '
[ "$(out_of '--repeat 11' | grep -c 'allowed 200')" -eq 10 ] && ok "the first 10 of --repeat 11 are allowed" \
    || bad "--repeat 11: $(out_of '--repeat 11')"
expect '--repeat 11' 1 '^11 denied 429 rate_limited.*Retry-After: [0-9]+'
# The bare `keygate check`: its text is the whole line.
k=$(sed -n 's/^@@begin \([0-9]*\) keygate check$/\1/p' "$T/out" | head -1)
if [ -n "$k" ]; then
    o=$(awk -v k="$k" '$0 ~ "^@@begin " k " " {p = 1; next} $0 ~ "^@@rc " k " " {exit} p' "$T/out")
    r=$(sed -n "s/^@@rc $k \([0-9]*\)$/\1/p" "$T/out")
    [ "$r" = 1 ] && printf '%s\n' "$o" | grep -q 'denied 401 unauthorized.*WWW-Authenticate: Bearer' \
        && ok "keygate check without a key: 401 with WWW-Authenticate" || bad "keygate check ($r): $o"
else
    bad "the tour has no bare 'keygate check'"
fi
expect 'whizo_notakey' 1 'denied 401 unauthorized' 'invalid API key'
expect '--name ci --plan enterprise' 0
expect '--method GET --path /v1/jobs/42' 0 'allowed 200'
expect '--method POST --path /v1/jobs' 1 'denied 403'
expect '--ip 198.51.100.1' 1 'denied 403'
expect 'ID=$(keygate key list' 0
expect 'key rotate' 0 'rotated|replaced|grace'
expect 'key revoke' 0 'revoked k_'
expect 'policy check' 2 'bad\.yaml:2:[0-9]+'
# Every other command exits 0.
others=$(grep '^@@rc ' "$T/out" | while read -r _ k r; do
    t=$(sed -n "s/^@@begin $k //p" "$T/out")
    case "$t" in *'keygate check'*|*'policy check'*) continue ;; esac
    [ "$r" = 0 ] || printf '%s (exit %s); ' "$t" "$r"
done)
[ -z "$others" ] && ok "every other command exits 0" || bad "failed: $others"
[ "$fail" -eq 0 ] || { echo "# the tour's output:"; sed 's/^/# /' "$T/out"; }
finish
