#!/usr/bin/env bash
# The main job of the README: install what the TLS Pool needs, build it, start the daemon on
# built-in defaults in a temporary directory and talk to it.
#
# Exits 0 only if every exchange gave the expected answer.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== installing Debian packages"
bash scripts/install-deps.sh

echo "== building (release)"
cargo build --release --locked --bins --quiet
bin=$PWD/target/release

work=$(mktemp -d /tmp/tlspool-demo.XXXXXX)
daemon_pid=
cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid"
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/tlspool.conf" <<CONF
daemon_pidfile $work/tlspool.pid
socket_mode 0600
socket_name $work/tlspool.sock
log_level INFO
log_stderr YES
CONF

echo "== starting the daemon: tlspool -f -c $work/tlspool.conf"
"$bin/tlspool" -f -c "$work/tlspool.conf" 2>"$work/daemon.log" &
daemon_pid=$!

for _ in $(seq 1 100); do
    [ -S "$work/tlspool.sock" ] && break
    sleep 0.05
done

echo "== tlspoolctl ping"
if ! out=$("$bin/tlspoolctl" --socket "$work/tlspool.sock" ping); then
    echo "demo: the daemon did not answer PING; its log follows" >&2
    cat "$work/daemon.log" >&2
    exit 1
fi
printf '%s\n' "$out"
case "$out" in
    *20151111api@tlspool.arpa2.net*) ;;
    *) echo "demo: unexpected PING reply" >&2; exit 1 ;;
esac

echo "== stopping the daemon with SIGTERM"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || { echo "demo: the daemon exited with an error" >&2; exit 1; }
daemon_pid=
if [ -e "$work/tlspool.sock" ] || [ -e "$work/tlspool.pid" ]; then
    echo "demo: the daemon left its socket or PID file behind" >&2
    exit 1
fi

echo "== demo passed: the daemon started, answered PING and stopped cleanly"
