# quickstart-keygated.sh - the keygated command line that
# scripts/quickstart.sh runs, in one place: sourced by quickstart.sh and
# by tests/keygated/test_trust.sh, so that the test judges the settings
# the quickstart really starts keygated with.
#
# quickstart_keygated_args POLICY LISTEN STATE: prints the arguments.
# Trusted proxies: only 127.0.0.1 and ::1, where a gateway on this host
# (conf/nginx, conf/caddy) connects from; never all of 127.0.0.0/8,
# from which any local process could forge X-Forwarded-For
# (docs/keygated.md, "The client address").
quickstart_keygated_args() {
    printf '%s\n' "--config $1 --listen $2 --pid-file $3/keygated.pid --access-log $3/access.log --trusted-proxy 127.0.0.1 --trusted-proxy ::1"
}
