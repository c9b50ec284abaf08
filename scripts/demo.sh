#!/usr/bin/env bash
# The main job of the README: install what the TLS Pool needs, build it, create a development
# setup with `tlspool-admin dev-init`, start the daemon and run TLS through it both ways:
#
#   (a) tlspoolctl connect runs as TLS client against a real gnutls-serv --echo, which serves
#       the dev.example server identity from the SoftHSM2 token.
#   (b) A real openssl s_client talks to tlspoolctl serve --echo --once as TLS server.
#
# gnutls-serv listens on every interface and has no loopback-only option, so everything after
# the build runs inside a private network namespace whose only interface is loopback
# (scripts/netns-run.sh, which needs root).
#
# Exits 0 only if every exchange gave the expected answer.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

DOMAIN=dev.example
OTHER_DOMAIN=other.example
CLIENT_PORT=4433
SERVER_PORT=4434

if [ -z "${TLSPOOL_DEMO_IN_NETNS:-}" ]; then
    echo "== installing Debian packages"
    bash scripts/install-deps.sh

    echo "== building (release)"
    cargo build --release --locked --bins --quiet

    echo "== entering a private network namespace with only loopback"
    TLSPOOL_DEMO_IN_NETNS=1 exec bash scripts/netns-run.sh bash "$0"
fi

# Cargo puts its output under CARGO_TARGET_DIR when that is set, and under ./target otherwise.
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d /tmp/tlspool-demo.XXXXXX)
dev=$work/dev
daemon_pid=
server_pid=
serve_pid=
cleanup() {
    for pid in $serve_pid $server_pid $daemon_pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "demo: $*" >&2
    for log in "$work"/*.log; do
        [ -s "$log" ] || continue
        echo "--- $log" >&2
        tail -n 20 "$log" >&2
    done
    exit 1
}

# Waits until a TCP socket listens on port $1.
wait_listening() {
    local port_hex
    port_hex=$(printf ':%04X ' "$1")
    for _ in $(seq 1 200); do
        grep -q "$port_hex.* 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null && return 0
        sleep 0.05
    done
    fail "nothing listens on port $1"
}

echo "== tlspool-admin dev-init $dev --domain $DOMAIN --domain $OTHER_DOMAIN"
"$bin/tlspool-admin" dev-init "$dev" --domain "$DOMAIN" --domain "$OTHER_DOMAIN" \
    >"$work/dev-init.txt" || fail "dev-init failed"
sed -n '1,/^$/p' "$work/dev-init.txt"
export SOFTHSM2_CONF=$dev/softhsm2.conf

echo "== starting the daemon: SOFTHSM2_CONF=$SOFTHSM2_CONF tlspool -f -c $dev/tlspool.conf"
"$bin/tlspool" -f -c "$dev/tlspool.conf" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 1 100); do
    [ -S "$dev/tlspool.sock" ] && break
    sleep 0.05
done

echo "== tlspoolctl ping"
ctl=("$bin/tlspoolctl" --config "$dev/tlspool.conf")
out=$("${ctl[@]}" ping) || fail "the daemon did not answer PING"
printf '%s\n' "$out"
case "$out" in
    *20151111api@tlspool.arpa2.net*) ;;
    *) fail "unexpected PING reply" ;;
esac

echo "== (a) gnutls-serv --echo on port $CLIENT_PORT with the $DOMAIN key on the token"
key_uri=$(awk -v name="$DOMAIN" '$1 == name && $2 == "server" { print $3 }' "$work/dev-init.txt")
[ -n "$key_uri" ] || fail "dev-init printed no server key URI for $DOMAIN"
pin=$(sed -n 's/^pkcs11_pin //p' "$dev/tlspool.conf")
GNUTLS_PIN=$pin gnutls-serv --echo --provider /usr/lib/softhsm/libsofthsm2.so \
    --x509certfile "$dev/$DOMAIN-server.pem" --x509keyfile "$key_uri" \
    --port "$CLIENT_PORT" >"$work/gnutls-serv.log" 2>&1 &
server_pid=$!
wait_listening "$CLIENT_PORT"

echo "== (a) tlspoolctl connect 127.0.0.1 $CLIENT_PORT --remote-id $DOMAIN"
sent="hello gnutls-serv, this is the TLS Pool"
received=$(printf '%s\n' "$sent" |
    "${ctl[@]}" connect 127.0.0.1 "$CLIENT_PORT" --remote-id "$DOMAIN" 2>"$work/connect.log") ||
    fail "tlspoolctl connect failed: $(cat "$work/connect.log")"
sed 's/^/   /' "$work/connect.log"
echo "   sent:     $sent"
echo "   received: $received"
[ "$received" = "$sent" ] || fail "gnutls-serv echoed something else"
kill -TERM "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=

echo "== (b) tlspoolctl serve --listen 127.0.0.1:$SERVER_PORT --local-id $DOMAIN --echo --once"
"${ctl[@]}" serve --listen "127.0.0.1:$SERVER_PORT" --local-id "$DOMAIN" --echo --once \
    2>"$work/serve.log" &
serve_pid=$!
wait_listening "$SERVER_PORT"

echo "== (b) openssl s_client -connect 127.0.0.1:$SERVER_PORT -CAfile ca.pem -verify_return_error"
sent="hello tlspoolctl serve, this is openssl"
coproc S_CLIENT {
    exec openssl s_client -connect "127.0.0.1:$SERVER_PORT" -CAfile "$dev/ca.pem" \
        -verify_return_error -quiet -no_ign_eof 2>"$work/s_client.log"
}
printf '%s\n' "$sent" >&"${S_CLIENT[1]}"
received=
read -r -t 20 received <&"${S_CLIENT[0]}" || true
eval "exec ${S_CLIENT[1]}>&-"
wait "$serve_pid" || fail "tlspoolctl serve failed"
serve_pid=
sed 's/^/   /' "$work/serve.log"
grep '^depth=0' "$work/s_client.log" | sed 's/^/   s_client verified /'
echo "   sent:     $sent"
echo "   received: $received"
[ "$received" = "$sent" ] || fail "tlspoolctl serve echoed something else"

echo "== stopping the daemon with SIGTERM"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || fail "the daemon exited with an error"
daemon_pid=
if [ -e "$dev/tlspool.sock" ] || [ -e "$dev/tlspool.pid" ]; then
    fail "the daemon left its socket or PID file behind"
fi

echo "== demo passed: PING answered, both TLS exchanges matched, the daemon stopped cleanly"
