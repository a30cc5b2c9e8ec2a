# pg_env.sh - a PostgreSQL of the test's own, for shell tests: sourced
# after tests/lib.sh.  pg_start starts a server (initdb into a folder of
# its own, PG_DIR, 127.0.0.1 on a free port, a socket in PG_DIR/sock, as
# `nobody` when run as root: PostgreSQL refuses root; password (SCRAM)
# authentication over TCP) and creates the role keygate with a password;
# then PG_PORT, PG_PASSWORD and PG_PSQL (psql as the superuser, add -d DB)
# are set.  pg_stop stops it and removes the folder.  pg_skip_unless_installed exits 77 when the server binaries are
# not there.
PGBIN=${PGBIN:-}
if [ -z "$PGBIN" ]; then
    for pg_d in /usr/lib/postgresql/*/bin; do
        [ -x "$pg_d/initdb" ] && PGBIN=$pg_d
    done
fi

pg_skip_unless_installed() {
    if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/pg_ctl" ]; then
        echo "SKIP: PostgreSQL server binaries not found (apt-get install postgresql)"
        exit 77
    fi
}

pg_start() {
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kg-pg-XXXXXX") || return 1
    chmod 755 "$PG_DIR"
    PG_RUN=
    if [ "$(id -u)" -eq 0 ]; then
        chown nobody "$PG_DIR"
        PG_RUN="runuser -u nobody --"
    fi
    printf '%s\n' "pg-super-$$" > "$PG_DIR/su.pw"
    chmod 644 "$PG_DIR/su.pw"
    $PG_RUN "$PGBIN/initdb" -D "$PG_DIR/data" -U postgres --pwfile="$PG_DIR/su.pw" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log"; return 1; }
    mkdir -p "$PG_DIR/sock" && chown nobody "$PG_DIR/sock" 2>/dev/null
    for pg_attempt in 1 2 3 4 5; do
        PG_PORT=$(free_port)
        PG_OPTS="-p $PG_PORT -k $PG_DIR/sock -c listen_addresses=127.0.0.1 -c max_connections=40 -c fsync=off"
        $PG_RUN "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -o "$PG_OPTS" \
            -w -t 30 start >/dev/null 2>&1 && break
        PG_PORT=
    done
    [ -n "$PG_PORT" ] || { echo "could not start PostgreSQL"; return 1; }
    PG_PSQL="$PG_RUN $PGBIN/psql -X -q -v ON_ERROR_STOP=1 -h $PG_DIR/sock -p $PG_PORT -U postgres"
    PG_PASSWORD="kg-test-$$-pw"
    $PG_PSQL -d postgres -c "CREATE ROLE keygate LOGIN PASSWORD '$PG_PASSWORD'"
}

pg_stop() {
    [ -n "${PG_DIR:-}" ] || return 0
    $PG_RUN "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$PG_DIR"
}
