#!/bin/sh
# Install what keygate needs to build, test and run on Debian 12
# (idempotent; run as root or with sudo).
set -e
PKGS="build-essential autoconf automake libtool libltdl-dev pkg-config
      libssl-dev libyaml-dev libdeflate-dev
      scdoc
      libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libldap2-dev libhiredis-dev
      libcurl4-openssl-dev
      curl ca-certificates"
# Servers for the integration tests and the benchmarks.
TEST_PKGS="check openssl postgresql slapd ldap-utils redis-server nginx nginx-dev caddy wrk sqlite3 procps iproute2 python3"
# tests/man/test_man.sh lints the man pages with `man --warnings`.
TEST_PKGS="$TEST_PKGS man-db"
# The fuzzers (fuzz/, `configure --enable-fuzzing`): clang and its
# libFuzzer runtime (libclang_rt.fuzzer-x86_64.a, which clang-14 only
# recommends, so it is named); zlib, whose CRC-32 fuzz_keyfmt checks
# libkeygate's key checksums against.
TEST_PKGS="$TEST_PKGS clang libclang-rt-14-dev zlib1g-dev"
# The dashboard's browser test (tests/dashboard/): headless Chromium, and
# Node with npm, which installs puppeteer-core and axe-core into the build
# tree at test time.  npm only when none is on PATH: NodeSource's nodejs
# carries its own and conflicts with Debian's npm package.
TEST_PKGS="$TEST_PKGS chromium fonts-dejavu-core nodejs"
command -v npm >/dev/null 2>&1 || TEST_PKGS="$TEST_PKGS npm"

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
want="$PKGS"
[ "${1:-}" = "--test" ] && want="$PKGS $TEST_PKGS"
# Building and checking the Debian packages (--deb; --test too, since
# scripts/test.sh ends with tests/debian/test_packages.sh).
DEB_PKGS="debhelper dpkg-dev lintian fakeroot check git adduser"
[ "${1:-}" = "--deb" ] && want="$PKGS $DEB_PKGS"
[ "${1:-}" = "--test" ] && want="$want $DEB_PKGS"
missing=
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "keygate: installing:$missing"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
