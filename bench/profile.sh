#!/usr/bin/env bash
# Load-independent cost of the daemon: runs a fixed amount of work through the pool (sequential
# latency connections, then one bulk echo) against gnutls-serv --echo inside a private network
# namespace, and reports the daemon's context switches. With PROFILE_TOOL the daemon runs under
# a counting tool whose report goes to PROFILE_OUT:
#
#   bash bench/profile.sh                          context switches only
#   PROFILE_TOOL=strace bash bench/profile.sh      system calls per name (strace -c -f)
#   PROFILE_TOOL=strace-log bash bench/profile.sh  every system call with its time (strace -f -tt)
#   PROFILE_TOOL=callgrind bash bench/profile.sh   instructions (valgrind --tool=callgrind)
#
# PROFILE_CONNECTIONS (default 200) sets the number of latency connections, PROFILE_MIB
# (default 64) the MiB of the bulk echo; either may be 0. PROFILE_BIN is the directory of
# tlspool, tlspool-admin and bench (default target/release, with bench under examples/), so
# two builds can be compared back to back. Needs root (unshare) and release binaries.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
if [ -z "${TLSPOOL_PROFILE_IN_NETNS:-}" ]; then
    TLSPOOL_PROFILE_IN_NETNS=1 exec bash scripts/netns-run.sh bash "$0" "$@"
fi

bin=${PROFILE_BIN:-$repo/target/release}
bench=$bin/bench
[ -x "$bench" ] || bench=$bin/examples/bench
connections=${PROFILE_CONNECTIONS:-200}
mib=${PROFILE_MIB:-64}
tool=${PROFILE_TOOL:-}
out=${PROFILE_OUT:-/tmp/tlspool-profile.$tool.out}
work=$(mktemp -d /tmp/tlspool-profile.XXXXXX)
dev=$work/dev
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "profile: $*" >&2
    tail -n 20 "$work/daemon.log" >&2 || true
    exit 1
}

priority='NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM'
peer=peer.dev.example
"$bin/tlspool-admin" dev-init "$dev" --domain dev.example >"$work/dev-init.log" 2>&1 ||
    fail "dev-init failed"
export SOFTHSM2_CONF=$dev/softhsm2.conf
printf 'tls_priority %s\nlog_level ERROR\n' "$priority" >>"$dev/tlspool.conf"
socket=$dev/tlspool.sock

case $tool in
    '') wrapper=() ;;
    strace) wrapper=(strace -c -f -o "$out") ;;
    strace-log) wrapper=(strace -f -tt -o "$out") ;;
    callgrind) wrapper=(valgrind --tool=callgrind --callgrind-out-file="$out") ;;
    *) fail "PROFILE_TOOL must be strace, strace-log or callgrind, not $tool" ;;
esac
"${wrapper[@]}" "$bin/tlspool" -f -c "$dev/tlspool.conf" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
pids+=("$daemon_pid")
for _ in $(seq 1 600); do
    [ -S "$socket" ] && break
    sleep 0.1
done
[ -S "$socket" ] || fail "the daemon did not create $socket"

gnutls-serv --echo --priority "$priority" --x509certfile "$dev/peer-cert.pem" \
    --x509keyfile "$dev/peer-key.pem" --port 5001 >/dev/null 2>"$work/gnutls-serv.log" &
pids+=("$!")
for _ in $(seq 1 200); do
    grep -q ':1389 .* 0A ' /proc/net/tcp 2>/dev/null && break
    sleep 0.05
done

# The sum over the daemon's threads of voluntary and involuntary context switches.
switches() {
    cat /proc/"$daemon_pid"/task/*/status 2>/dev/null |
        awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# One connection first, so start-up work (the token login, the first credential load) is not
# counted per connection.
"$bench" latency-pool "$socket" 127.0.0.1:5001 "$peer" 1 >/dev/null || fail "warm-up failed"
s0=$(switches)
if [ "$connections" -gt 0 ]; then
    line=$("$bench" latency-pool "$socket" 127.0.0.1:5001 "$peer" "$connections") ||
        fail "latency-pool failed"
    s1=$(switches)
    echo "latency: $line"
    echo "latency: daemon context switches per connection:" \
        "$(awk -v d=$((s1 - s0)) -v n="$connections" 'BEGIN { printf "%.1f", d / n }')"
    s0=$s1
fi
if [ "$mib" -gt 0 ]; then
    line=$("$bench" bulk-pool "$socket" 127.0.0.1:5001 "$peer" $((mib << 20))) ||
        fail "bulk-pool failed"
    s1=$(switches)
    echo "bulk: $line"
    echo "bulk: daemon context switches per MiB:" \
        "$(awk -v d=$((s1 - s0)) -v n="$mib" 'BEGIN { printf "%.1f", d / n }')"
fi

kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
if [ -n "$tool" ]; then
    echo "report of $tool: $out"
fi
