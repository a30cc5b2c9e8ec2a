#!/bin/sh
# Build keygate and run the whole test suite on a fresh Debian 12 machine:
# unit tests, CLI tests and the integration tests against real servers
# (started on loopback by the tests themselves), then the unit tests again
# under AddressSanitizer + UndefinedBehaviorSanitizer, then each libFuzzer
# target of fuzz/ for 30 s (FUZZ_SECONDS).
set -e
cd "$(dirname "$0")/.."
sh scripts/deps.sh --test
./autogen.sh >/dev/null 2>&1
mkdir -p _build && cd _build
WITH="--with-microhttpd=yes --with-sqlite=yes --with-pq=yes --with-ldap=yes --with-hiredis=yes"
../configure $WITH --with-nginx-module=yes --with-man=yes --enable-werror >configure.out 2>&1 || { cat configure.out; exit 1; }
tail -12 configure.out
# Autoconf's `rm -f core` against the core/ folder (m4/kg_rm_core.m4).
if grep "cannot remove" configure.out; then
    echo "configure printed rm errors"
    exit 1
fi
J=$(nproc 2>/dev/null || echo 2)
status=0
# A failing test's own log, so that CI's output says what failed and where
# (the .log files do not outlive CI's clean clone).  Check's failure lines
# (file:line:F/E:...) first, then the log's tail.
show_failures() {
    for trs in $(find "$1" -name '*.trs' -newer configure.out 2>/dev/null | sort); do
        grep -q -E '^:test-result: (FAIL|ERROR)' "$trs" || continue
        log=${trs%.trs}.log
        echo "---- $log ----"
        grep -E ':[FE]:' "$log" | head -20
        tail -40 "$log"
    done
}
make -j"$J" >make.out 2>&1 || { tail -50 make.out; exit 1; }
make -j"$J" check || { status=1; show_failures tests; }
# Check's own summary lines, one per suite.
grep -h -E '^[0-9]+%: Checks: ' tests/unit/*.log 2>/dev/null || true
echo "== sanitizers (ASan + UBSan) =="
make check-sanitizers SAN_CONFIGURE_FLAGS="$WITH" || { status=1; show_failures _san; }
echo "== ThreadSanitizer (unit suites) =="
make check-tsan SAN_CONFIGURE_FLAGS="$WITH" || { status=1; show_failures _tsan; }
echo "== valgrind memcheck (unit suites) =="
make check-valgrind || { status=1; show_failures tests; }
echo "== make distcheck (the tarball builds, installs and passes the unit suites) =="
make distcheck TESTS='$(UNIT_TESTS) tests/abi/test_abi.sh' >distcheck.out 2>&1 \
    && tail -4 distcheck.out || { tail -40 distcheck.out; status=1; }
# The libFuzzer targets of fuzz/, built with clang in their own tree and
# run FUZZ_SECONDS (30) each under ASan + UBSan: a crash, leak, sanitizer
# report or timeout fails the run and leaves its reproducer (named in the
# output) in _fuzz/fuzz/run/<target>/.
echo "== fuzzing (libFuzzer, ${FUZZ_SECONDS:-30} s per target) =="
( cd .. && mkdir -p _fuzz && cd _fuzz &&
  { CC=clang ../configure --enable-fuzzing $WITH >configure.out 2>&1 || { cat configure.out; exit 1; }; } &&
  { make -j"$J" fuzz >make.out 2>&1 || { tail -50 make.out; exit 1; }; } &&
  make fuzz-run FUZZ_SECONDS="${FUZZ_SECONDS:-30}" ) || status=1
# ---- Debian packages (tests/debian/test_packages.sh) -------------------
# Built from the tracked files, installed on this machine, keygated run as
# its unit says, then purged.  Needs root: skipped (77) without it.
echo "== Debian packages =="
pkg_rc=0
sh ../tests/debian/test_packages.sh || pkg_rc=$?
case $pkg_rc in 0) ;; 77) echo "Debian packages: skipped" ;; *) status=1 ;; esac
# ---- end of the Debian packages block -----------------------------------
results=$(find . -name '*.trs' -exec grep -h '^:test-result:' {} + || true)
pass=$(printf '%s\n' "$results" | grep -c 'PASS' || true)
fail=$(printf '%s\n' "$results" | grep -c -E 'FAIL|ERROR' || true)
skip=$(printf '%s\n' "$results" | grep -c 'SKIP' || true)
echo "$pass passed, $fail failed, $skip skipped"
exit $status
