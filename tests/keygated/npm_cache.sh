# npm_cache.sh - sourced by keygated's tests that run npm packages
# (after lib.sh): npm_cache DIR NAME@VERSION... installs into DIR (in
# the build tree, never in git, reused by the next run) those that
# DIR/node_modules lacks at that version, with npm install --prefix,
# --no-audit --no-fund --ignore-scripts, under a lock (DIR.lock: tests
# that share DIR may run at once).  node and npm are scripts/deps.sh
# --test's: without them, or if the install fails, the test fails
# (exit 1); it is not skipped.
npm_cache() {
    npm_dir=$1
    shift
    command -v node >/dev/null && command -v npm >/dev/null ||
        { echo "FAIL: node and npm are needed (scripts/deps.sh --test)"; exit 1; }
    mkdir -p "$npm_dir"
    exec 9>"$npm_dir.lock"
    flock 9
    npm_missing=
    for npm_p in "$@"; do
        node -e "process.exit(require('$npm_dir/node_modules/${npm_p%@*}/package.json').version === '${npm_p##*@}' ? 0 : 1)" \
            2>/dev/null || npm_missing="$npm_missing $npm_p"
    done
    if [ -n "$npm_missing" ]; then
        [ -f "$npm_dir/package.json" ] || echo '{"private": true}' >"$npm_dir/package.json"
        # shellcheck disable=SC2086 # one word per package
        npm install --prefix "$npm_dir" --no-audit --no-fund --ignore-scripts --loglevel=error \
            $npm_missing >"$T/npm.log" 2>&1 ||
            { echo "FAIL: npm install$npm_missing:"; cat "$T/npm.log"; exit 1; }
    fi
    exec 9>&-
}
