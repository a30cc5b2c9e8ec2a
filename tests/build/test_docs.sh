#!/bin/sh
# Code and docs cite documents of this repository that exist: every
# "docs/NAME.md" named in a source, test, policy or document is there, and
# nothing cites DESIGN.md (the steering design, which is not in the
# repository: docs/architecture.md is its account of what the code does).
set -u
S=${KEYGATE_SRCDIR:-.}
cd "$S" || exit 1
fail=0
files=$(find README.md Makefile.am configure.ac core include plugins tools tests conf docs nginx -type f \
        \( -name '*.[ch]' -o -name '*.md' -o -name '*.sh' -o -name '*.yaml' \
           -o -name '*.conf' -o -name '*.am' \) ! -name test_docs.sh 2>/dev/null)
[ -f docs/architecture.md ] && echo "ok - docs/architecture.md exists" || { echo "FAIL - no docs/architecture.md"; fail=1; }
cited=$(grep -ohE 'docs/[A-Za-z0-9_-]+\.md' $files | sort -u)
for d in $cited; do
    if [ -f "$d" ]; then echo "ok - $d exists"; else
        echo "FAIL - $d is cited but missing: $(grep -lF "$d" $files | tr '\n' ' ')"
        fail=1
    fi
done
stale=$(grep -lF 'DESIGN.md' $files)
if [ -n "$stale" ]; then
    echo "FAIL - DESIGN.md (not in the repository) is cited by: $stale"
    fail=1
else
    echo "ok - nothing cites DESIGN.md"
fi
exit $fail
