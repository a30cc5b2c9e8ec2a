# slapd_env.sh - start real slapd instances for the ldap store's tests
# and benchmark (sourced by tests/integration/test_ldap.sh and
# bench/ldap/run.sh).  Everything lives under $KG_LDAP_TMP; servers
# listen on 127.0.0.1 only.
#
#   free_port (tests/lib.sh)        a TCP port nobody listens on
#   slapd_make_ca DIR               a CA and a server certificate for
#                                   127.0.0.1/localhost (openssl CLI)
#   slapd_setup NAME PORT FORM [TLSDIR]
#                                   FORM: config (cn=config from the shipped
#                                   keygate.ldif) or conf (slapd.conf with the
#                                   shipped keygate.schema)
#   slapd_load NAME FILE.ldif       offline load (slapadd) into the database
#   slapd_start NAME / slapd_stop NAME
#   slapd_pause NAME / slapd_resume NAME   SIGSTOP / SIGCONT: a server that
#                                   accepts connections but never answers
#   slapd_ensure NAME               started if it is not, resumed if paused
#   slapd_keys_anonymous NAME read|none
#                                   (FORM conf only) may anonymous clients
#                                   read the keys?  From the next start
#   slapd_policy FILE URIS BIND_DN PWFILE [OPTION LINES...]
#                                   a policy: its one key store LDAP on
#                                   URIS (cached 60 s, unknown keys 1 s),
#                                   each further argument an option line;
#                                   its one plan free, with no limits
#
# The directory: dc=example,dc=com with ou=apikeys (the keys), and in
# ou=services cn=keygate (may read the keys, password "readpw") and
# cn=keygate-rw (may write them, password "writepw").  The root DN
# cn=admin,dc=example,dc=com has password "secret".  A process of root
# connecting over ldapi:// (SASL EXTERNAL) may read the keys.

SLAPD=${SLAPD:-/usr/sbin/slapd}
SLAPADD=${SLAPADD:-/usr/sbin/slapadd}
LDAP_MODULES=${LDAP_MODULES:-/usr/lib/ldap}
LDAP_SCHEMA=${LDAP_SCHEMA:-/etc/ldap/schema}

. "$KEYGATE_SRCDIR/tests/lib.sh"

slapd_make_ca() {
    d=$1
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=keygate test CA" \
        -keyout "$d/ca.key" -out "$d/ca.crt" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        >/dev/null 2>&1 || return 1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 || return 1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
        -CAcreateserial -days 2 -extfile "$d/ext.cnf" -out "$d/server.crt" >/dev/null 2>&1 || return 1
    # A second CA that signed nothing: trusting it must not be enough.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other CA" \
        -keyout "$d/other.key" -out "$d/other.crt" >/dev/null 2>&1 || return 1
    chmod 0644 "$d/server.key"
}

# The ACL both forms share: keys readable by the services and by root
# over ldapi, writable by cn=keygate-rw.
_slapd_acl_subject() {
    echo 'dn.subtree="ou=apikeys,dc=example,dc=com" by dn.exact="cn=keygate-rw,ou=services,dc=example,dc=com" write by dn.exact="cn=keygate,ou=services,dc=example,dc=com" read by dn.exact="gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth" read by * none'
}

slapd_setup() {
    name=$1 port=$2 form=$3 tls=${4:-}
    d="$KG_LDAP_TMP/$name"
    mkdir -p "$d/db"
    echo "$port" >"$d/port"
    echo "ldap://127.0.0.1:$port/" >"$d/uri"
    sock=$(printf '%s' "$d/ldapi" | sed 's|/|%2F|g')
    echo "ldapi://$sock" >"$d/ldapi_uri"
    if [ -n "$tls" ]; then
        echo "ldaps://127.0.0.1:$(free_port)/" >"$d/ldaps_uri"
    fi
    if [ "$form" = conf ]; then
        {
            echo "include $LDAP_SCHEMA/core.schema"
            echo "include $LDAP_SCHEMA/cosine.schema"
            echo "include $KEYGATE_SRCDIR/conf/ldap/keygate.schema"
            echo "pidfile $d/slapd.pid"
            echo "modulepath $LDAP_MODULES"
            echo "moduleload back_mdb"
            if [ -n "$tls" ]; then
                echo "TLSCACertificateFile $tls/ca.crt"
                echo "TLSCertificateFile $tls/server.crt"
                echo "TLSCertificateKeyFile $tls/server.key"
            fi
            echo "database mdb"
            echo "maxsize 1073741824"
            echo "suffix \"dc=example,dc=com\""
            echo "rootdn \"cn=admin,dc=example,dc=com\""
            echo "rootpw secret"
            echo "directory $d/db"
            echo "index objectClass eq"
            echo "index apiKeyHash eq"
            echo "index apiKeyId eq"
            echo "access to attrs=userPassword by anonymous auth by * none"
            echo "access to $(_slapd_acl_subject)"
            echo "access to * by * read"
        } >"$d/slapd.conf"
        echo "-f $d/slapd.conf" >"$d/cfgarg"
    else
        mkdir -p "$d/slapd.d"
        {
            echo "dn: cn=config"
            echo "objectClass: olcGlobal"
            echo "cn: config"
            echo "olcPidFile: $d/slapd.pid"
            if [ -n "$tls" ]; then
                echo "olcTLSCACertificateFile: $tls/ca.crt"
                echo "olcTLSCertificateFile: $tls/server.crt"
                echo "olcTLSCertificateKeyFile: $tls/server.key"
            fi
            echo ""
            echo "dn: cn=module{0},cn=config"
            echo "objectClass: olcModuleList"
            echo "cn: module{0}"
            echo "olcModulePath: $LDAP_MODULES"
            echo "olcModuleLoad: back_mdb"
            echo ""
            echo "dn: cn=schema,cn=config"
            echo "objectClass: olcSchemaConfig"
            echo "cn: schema"
            echo ""
            echo "include: file://$LDAP_SCHEMA/core.ldif"
            echo ""
            echo "include: file://$LDAP_SCHEMA/cosine.ldif"
            echo ""
            echo "include: file://$KEYGATE_SRCDIR/conf/ldap/keygate.ldif"
            echo ""
            echo "dn: olcDatabase={-1}frontend,cn=config"
            echo "objectClass: olcDatabaseConfig"
            echo "objectClass: olcFrontendConfig"
            echo "olcDatabase: {-1}frontend"
            echo ""
            echo "dn: olcDatabase={0}config,cn=config"
            echo "objectClass: olcDatabaseConfig"
            echo "olcDatabase: {0}config"
            echo "olcAccess: {0}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * none"
            echo ""
            echo "dn: olcDatabase={1}mdb,cn=config"
            echo "objectClass: olcDatabaseConfig"
            echo "objectClass: olcMdbConfig"
            echo "olcDatabase: {1}mdb"
            echo "olcSuffix: dc=example,dc=com"
            echo "olcRootDN: cn=admin,dc=example,dc=com"
            echo "olcRootPW: secret"
            echo "olcDbDirectory: $d/db"
            echo "olcDbMaxSize: 1073741824"
            echo "olcDbIndex: objectClass eq"
            echo "olcDbIndex: apiKeyHash eq"
            echo "olcDbIndex: apiKeyId eq"
            echo "olcAccess: {0}to attrs=userPassword by anonymous auth by * none"
            echo "olcAccess: {1}to $(_slapd_acl_subject)"
            echo "olcAccess: {2}to * by * read"
        } >"$d/config.ldif"
        "$SLAPADD" -n0 -F "$d/slapd.d" -l "$d/config.ldif" >"$d/slapadd.log" 2>&1 || {
            cat "$d/slapadd.log" >&2
            return 1
        }
        echo "-F $d/slapd.d" >"$d/cfgarg"
    fi
    # The tree every test starts from.
    cat >"$d/base.ldif" <<EOF
dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: example
dc: example

dn: ou=apikeys,dc=example,dc=com
objectClass: organizationalUnit
ou: apikeys

dn: ou=services,dc=example,dc=com
objectClass: organizationalUnit
ou: services

dn: cn=keygate,ou=services,dc=example,dc=com
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: keygate
userPassword: readpw

dn: cn=keygate-rw,ou=services,dc=example,dc=com
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: keygate-rw
userPassword: writepw
EOF
    slapd_load "$name" "$d/base.ldif"
}

slapd_load() {
    d="$KG_LDAP_TMP/$1"
    # shellcheck disable=SC2046
    "$SLAPADD" -q $(cat "$d/cfgarg") -b dc=example,dc=com -l "$2" >"$d/slapadd.log" 2>&1 || {
        cat "$d/slapadd.log" >&2
        return 1
    }
}

slapd_start() {
    d="$KG_LDAP_TMP/$1"
    rm -f "$d/slapd.pid"
    # Its own session (setsid -f): a test harness that kills its process
    # group (Check does, after each test) must not take the server with
    # it.  The pid comes from slapd's pidfile.
    # shellcheck disable=SC2046
    setsid -f "$SLAPD" $(cat "$d/cfgarg") -h "$(cat "$d/uri") $(cat "$d/ldapi_uri") $(cat "$d/ldaps_uri" 2>/dev/null)" \
        -d 0 >"$d/slapd.log" 2>&1 </dev/null
    i=0
    while [ $i -lt 600 ]; do  # 30s: a loaded CI machine is slow
        if [ -s "$d/slapd.pid" ] &&
           ldapsearch -x -H "$(cat "$d/uri")" -b "" -s base -LLL namingContexts >/dev/null 2>&1; then
            cp "$d/slapd.pid" "$d/slapd.bgpid"
            return 0
        fi
        if grep -q -i -E 'slapd stopped|failed|error' "$d/slapd.log" 2>/dev/null; then
            break
        fi
        sleep 0.05
        i=$((i + 1))
    done
    echo "slapd $1 did not start:" >&2
    cat "$d/slapd.log" >&2
    return 1
}

slapd_stop() {
    d="$KG_LDAP_TMP/$1"
    [ -f "$d/slapd.bgpid" ] || return 0
    pid=$(cat "$d/slapd.bgpid")
    kill -CONT "$pid" 2>/dev/null || true  # a paused server cannot stop
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$d/slapd.bgpid"
}

# SIGSTOP, then wait (at most 2 s) until every thread of the server is
# stopped: on a loaded machine a thread may still answer a request sent
# right after kill returned, and a test of a hung server would see it.
slapd_pause() {
    pid=$(cat "$KG_LDAP_TMP/$1/slapd.bgpid")
    kill -STOP "$pid" || return 1
    i=0
    while [ $i -lt 200 ]; do
        running=0
        for st in /proc/"$pid"/task/*/stat; do
            # the state is the field after the ")" that ends the name
            case $(sed 's/.*) //' "$st" 2>/dev/null | cut -d' ' -f1) in
            T|t|'') ;;
            *) running=1 ;;
            esac
        done
        [ $running -eq 0 ] && return 0
        sleep 0.01
        i=$((i + 1))
    done
    return 0
}

slapd_resume() {
    kill -CONT "$(cat "$KG_LDAP_TMP/$1/slapd.bgpid")"
}

# Running and not paused, whatever a test that failed half-way left
# (stopped, or SIGSTOPped): so that one failure does not cascade.
slapd_ensure() {
    d="$KG_LDAP_TMP/$1"
    if [ -f "$d/slapd.bgpid" ] && kill -0 "$(cat "$d/slapd.bgpid")" 2>/dev/null; then
        kill -CONT "$(cat "$d/slapd.bgpid")"
    else
        slapd_start "$1"
    fi
}

slapd_keys_anonymous() {
    d="$KG_LDAP_TMP/$1"
    sed -i "/^access to dn.subtree=\"ou=apikeys/s/by \* [a-z]*\$/by * $2/" "$d/slapd.conf"
    grep -q "^access to dn.subtree=\"ou=apikeys.*by \* $2\$" "$d/slapd.conf"
}

slapd_policy() {
    f=$1 uris=$2 dn=$3 pw=$4
    shift 4
    {
        echo "credential:"
        echo "  - {module: bearer, control: optional}"
        echo "keystore:"
        echo "  - module: ldap"
        echo "    control: required"
        echo "    cache: {ttl: 60s, negative_ttl: 1s}"
        echo "    options:"
        echo "      uris: [$uris]"
        echo "      base_dn: ou=apikeys,dc=example,dc=com"
        echo "      bind_dn: $dn"
        echo "      bind_password_file: $pw"
        for l in "$@"; do echo "      $l"; done
        echo "plans:"
        echo "  free: {}"
    } >"$f"
}

# What every slapd test starts with: skip (77) without slapd, then a
# temporary folder KG_LDAP_TMP, and servers a and b stopped and the
# folder removed when the test exits, however it exits.
slapd_begin() {
    if [ ! -x "$SLAPD" ] || [ ! -x "$SLAPADD" ] || ! command -v ldapsearch >/dev/null 2>&1; then
        echo "SKIP: slapd or ldap-utils not installed (apt-get install slapd ldap-utils)"
        exit 77
    fi
    KG_LDAP_TMP=$(mktemp -d)
    export KG_LDAP_TMP
    trap 'slapd_stop a; slapd_stop b; rm -rf "$KG_LDAP_TMP"' EXIT
    trap 'exit 1' INT TERM
}
