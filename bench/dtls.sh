#!/usr/bin/env bash
# DTLS benchmark of the TLS Pool against a direct GnuTLS DTLS client: datagrams per second and
# throughput of a UDP echo through `gnutls-serv --udp --echo`, on loopback inside a private
# network namespace (scripts/netns-run.sh, needs root). Prints a table and rewrites the DTLS
# results section of docs/BENCHMARKS.md. bench/run.sh runs it after its TCP measurements.
#
#   bash bench/dtls.sh                     full run, about 1 minute on 2 cores
#   BENCH_QUICK=1 bash bench/dtls.sh       smaller counts, for checking the script itself
#   BENCH_SKIP_BUILD=1 bash bench/dtls.sh  use the binaries already in target/release
#   BENCH_BIN=DIR                          binaries from DIR in place of target/release
#
# Every peer is started here, every run has a count and a time limit, and cleanup stops every
# process this script started.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
export CARGO_TERM_COLOR=never

if [ -z "${TLSPOOL_BENCH_IN_NETNS:-}" ]; then
    if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
        echo "== building (release)"
        cargo build --release --locked --bins --quiet
        cargo build --release --locked -p tlspool-client --example bench --quiet
    fi
    echo "== entering a private network namespace with only loopback"
    TLSPOOL_BENCH_IN_NETNS=1 exec bash scripts/netns-run.sh bash "$0" "$@"
fi

bin=${BENCH_BIN:-$repo/target/release}
bench=$bin/examples/bench
work=$(mktemp -d /tmp/tlspool-bench-dtls.XXXXXX)
dev=$work/dev
pids=()
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
trap cleanup EXIT

# Waits until a UDP socket is bound to port $1.
wait_udp_bound() {
    local port_hex
    port_hex=$(printf ':%04X ' "$1")
    for _ in $(seq 1 200); do
        grep -q "$port_hex" /proc/net/udp 2>/dev/null && return 0
        sleep 0.05
    done
    fail "nothing is bound to UDP port $1"
}

if [ -n "${BENCH_QUICK:-}" ]; then
    count=2000 repeats=1
else
    count=20000 repeats=3
fi
# gnutls-serv --udp --echo (GnuTLS 3.7.9) returns at most 254 bytes of a longer datagram, so
# the datagrams stay below that.
size=200

# DTLS 1.2 with AES-128-GCM alone, in gnutls-serv, the pool and the direct client.
priority='NORMAL:-VERS-ALL:+VERS-DTLS1.2:-CIPHER-ALL:+AES-128-GCM'
peer=peer.dev.example
local_id=dev.example

load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
echo "== tlspool-admin dev-init (identity $local_id on SoftHSM2, $peer with a file key)"
"$bin/tlspool-admin" dev-init "$dev" --domain "$local_id" >"$work/dev-init.log" 2>&1 ||
    fail "dev-init failed"
export SOFTHSM2_CONF=$dev/softhsm2.conf
printf 'dtls_priority %s\ndtls_mtu 1400\nlog_level ERROR\n' "$priority" >>"$dev/tlspool.conf"
socket=$dev/tlspool.sock

"$bin/tlspool" -f -c "$dev/tlspool.conf" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
pids+=("$daemon_pid")
for _ in $(seq 1 100); do
    [ -S "$socket" ] && break
    sleep 0.05
done
[ -S "$socket" ] || fail "the daemon did not create $socket"

# Starts gnutls-serv --udp --echo on port $1, one per run so each run meets a fresh server;
# its PID goes to $server_pid. It prints every echoed line, so its standard output is dropped.
start_udp_echo() {
    gnutls-serv --udp --echo --priority "$priority" --x509certfile "$dev/peer-cert.pem" \
        --x509keyfile "$dev/peer-key.pem" --port "$1" >/dev/null 2>"$work/gnutls-serv-$1.log" &
    server_pid=$!
    pids+=("$server_pid")
    wait_udp_bound "$1"
}

echo "== 6. DTLS echo, $count datagrams of $size bytes per run, $repeats runs each"
declare -A dtls
port=5101
hz=$(getconf CLK_TCK)
for _ in $(seq 1 "$repeats"); do
    start_udp_echo "$port"
    ticks0=$(cpu_ticks "$daemon_pid")
    line=$("$bench" dtls-pool "$socket" "127.0.0.1:$port" "$peer" "$size" "$count") ||
        fail "dtls-pool failed"
    ticks1=$(cpu_ticks "$daemon_pid")
    dtls[pool]+="$(field datagrams_per_s <<<"$line") "
    dtls[pool_mib]+="$(field mib_per_s <<<"$line") "
    dtls[pool_lost]+="$(field lost <<<"$line") "
    dtls[pool_cpu]+="$(awk -v t=$((ticks1 - ticks0)) -v s="$(field seconds <<<"$line")" \
        -v hz="$hz" 'BEGIN { printf "%.2f", t / hz / s }') "
    stop "$server_pid"
    port=$((port + 1))

    start_udp_echo "$port"
    line=$("$bench" dtls-direct "127.0.0.1:$port" "$peer" "$dev/ca.pem" "$priority" "$size" \
        "$count") || fail "dtls-direct failed"
    dtls[direct]+="$(field datagrams_per_s <<<"$line") "
    dtls[direct_mib]+="$(field mib_per_s <<<"$line") "
    dtls[direct_lost]+="$(field lost <<<"$line") "
    stop "$server_pid"
    port=$((port + 1))
done
for key in pool pool_mib pool_cpu direct direct_mib; do
    dtls[$key]=$(tr ' ' '\n' <<<"${dtls[$key]}" | sed '/^$/d' | median)
done
for key in pool_lost direct_lost; do
    dtls[$key]=$(tr ' ' '\n' <<<"${dtls[$key]}" | awk '{ s += $1 } END { print s + 0 }')
done
echo "   pool ${dtls[pool]} datagrams/s (${dtls[pool_mib]} MiB/s, daemon ${dtls[pool_cpu]} CPUs busy), direct ${dtls[direct]} datagrams/s (${dtls[direct_mib]} MiB/s)"
echo "   lost: pool ${dtls[pool_lost]}, direct ${dtls[direct_lost]} of $((count * repeats))"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
table=$(
    cat <<EOF
| Measurement | TLS Pool | Direct GnuTLS | Ratio |
|---|---|---|---|
| 6. DTLS echo, $size-byte datagrams per second | ${dtls[pool]} | ${dtls[direct]} | $(ratio "${dtls[pool]}" "${dtls[direct]}")× |
| 6. DTLS echo throughput (MiB/s of payload) | ${dtls[pool_mib]} | ${dtls[direct_mib]} | $(ratio "${dtls[pool_mib]}" "${dtls[direct_mib]}")× |
| 6. Datagrams lost, of $((count * repeats)) | ${dtls[pool_lost]} | ${dtls[direct_lost]} | |
EOF
)
echo
echo "$table"

doc=$repo/docs/BENCHMARKS.md
if [ -f "$doc" ] && grep -q '^<!-- dtls-results:begin -->$' "$doc"; then
    {
        echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($cpu), load average"
        echo "$load_start at the start, with \`${BENCH_QUICK:+BENCH_QUICK=1 }bash bench/dtls.sh\`; $count datagrams"
        echo "per run, median of $repeats runs. During the pool's runs the daemon kept ${dtls[pool_cpu]} CPUs busy."
        echo
        echo "$table"
    } >"$work/results.md"
    awk -v results="$work/results.md" '
        /^<!-- dtls-results:end -->$/ { while ((getline line < results) > 0) print line; skip = 0 }
        !skip { print }
        /^<!-- dtls-results:begin -->$/ { skip = 1 }
    ' "$doc" >"$work/BENCHMARKS.md"
    cp "$work/BENCHMARKS.md" "$doc"
    echo "== rewrote the DTLS results section of docs/BENCHMARKS.md"
fi
