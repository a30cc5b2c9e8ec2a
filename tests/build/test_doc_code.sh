#!/bin/sh
# Every C code block of the documentation compiles: each ```c block of
# README.md and docs/*.md is written to a file of its own and compiled
# with -Wall -Wextra -Werror against this tree's public headers, as a
# reader would copy it (docs/plugins.md's example lacked <stdlib.h> and
# <string.h>: an error on GCC 14).  A block that is a fragment, not a
# file (statements at top level), says so in its info string,
# "```c fragment", and is skipped; keep those rare.
set -u
S=${KEYGATE_SRCDIR:-.}
B=${KEYGATE_BUILDDIR:-.}
CC=${CC:-cc}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
n=0
skipped=0
for doc in "$S/README.md" "$S"/docs/*.md; do
    rm -f "$T"/block.*
    # block.N.c for each ```c block; block.N.skip for a fragment.
    awk -v dir="$T" '
        /^```c( fragment)?[ \t]*$/ && !inb {
            inb = 1; k++
            out = dir "/block." k (($0 ~ /fragment/) ? ".skip" : ".c")
            printf "#line %d \"%s\"\n", NR + 1, FILENAME > out
            next
        }
        inb && /^```[ \t]*$/ { inb = 0; close(out); next }
        inb { print > out }
    ' "$doc"
    for f in "$T"/block.*; do
        [ -e "$f" ] || continue
        case "$f" in *.skip) skipped=$((skipped + 1)); continue ;; esac
        n=$((n + 1))
        name="${doc#"$S"/}, block at line $(sed -n '1s/^#line \([0-9]*\).*/\1/p' "$f")"
        if $CC -std=gnu11 -Wall -Wextra -Werror -fsyntax-only -I"$B/include" -I"$S/include" \
                -x c "$f" >"$T/cc.out" 2>&1; then
            echo "ok - $name compiles"
        else
            echo "FAIL - $name:"
            sed 's/^/#   /' "$T/cc.out"
            fail=1
        fi
    done
done
echo "$n blocks compiled, $skipped fragments skipped"
[ "$n" -ge 2 ] || { echo "FAIL - no C block found"; fail=1; }
exit $fail
