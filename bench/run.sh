#!/usr/bin/env bash
# Benchmarks of the TLS Pool against direct GnuTLS peers and stunnel, all on loopback inside a
# private network namespace (scripts/netns-run.sh, needs root). Prints a table and rewrites
# the results section of docs/BENCHMARKS.md.
#
#   bash bench/run.sh            full run, about 3 to 5 minutes on 2 cores
#   BENCH_QUICK=1 bash bench/run.sh   smaller counts, for checking the script itself
#   BENCH_SKIP_BUILD=1 bash bench/run.sh   use the binaries already in target/release
#
# Every peer is started here, every loop has a count and a time limit, and cleanup stops
# every process this script started.
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

# The daemon keeps two descriptors open per session (TCP and plaintext), so 10,000 idle sessions
# need more than 20,000. Without CAP_SYS_RESOURCE the soft limit can only rise to the hard one,
# and the large idle run shrinks to fit below it.
ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)

bin=$repo/target/release
bench=$bin/examples/bench
work=$(mktemp -d /tmp/tlspool-bench.XXXXXX)
dev=$work/dev
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "bench: $*" >&2
    for log in "$work"/*.log; do
        [ -s "$log" ] || continue
        echo "--- $log" >&2
        tail -n 15 "$log" | cut -c 1-200 >&2
    done
    exit 1
}

# Starts a background process, logging to $work/$1.log; its PID goes to $last_pid.
start() {
    local name=$1
    shift
    "$@" >"$work/$name.log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
}

stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

wait_listening() {
    local port_hex
    port_hex=$(printf ':%04X ' "$1")
    for _ in $(seq 1 200); do
        grep -q "$port_hex.* 0A " /proc/net/tcp 2>/dev/null && return 0
        sleep 0.05
    done
    fail "nothing listens on port $1"
}

# Prints the value of key $1 from a `key=value ...` line on standard input.
field() {
    tr ' ' '\n' | sed -n "s/^$1=//p"
}

# Prints the user plus system CPU time of process $1 in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

if [ -n "${BENCH_QUICK:-}" ]; then
    bulk_bytes=$((64 << 20)) repeats=1 latency_count=50 s_time_secs=3 idle_counts="200 1000"
else
    bulk_bytes=$((512 << 20)) repeats=3 latency_count=300 s_time_secs=8
    idle_large=10000
    if [ "$fd_limit" != unlimited ] && [ $((2 * idle_large + 400)) -gt "$fd_limit" ]; then
        idle_large=$(((fd_limit - 400) / 4 * 2))
    fi
    idle_counts="1000 $idle_large"
fi

# TLS 1.3 with AES-128-GCM alone, in every GnuTLS peer, the pool and stunnel.
priority='NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM'
suite=TLS_AES_128_GCM_SHA256
peer=peer.dev.example
local_id=dev.example

load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
echo "== tlspool-admin dev-init (identity $local_id on SoftHSM2, $peer with a file key)"
"$bin/tlspool-admin" dev-init "$dev" --domain "$local_id" >"$work/dev-init.log" 2>&1 ||
    fail "dev-init failed"
export SOFTHSM2_CONF=$dev/softhsm2.conf
printf 'tls_priority %s\nlog_level ERROR\n' "$priority" >>"$dev/tlspool.conf"
socket=$dev/tlspool.sock

start daemon "$bin/tlspool" -f -c "$dev/tlspool.conf"
daemon_pid=$last_pid
for _ in $(seq 1 100); do
    [ -S "$socket" ] && break
    sleep 0.05
done
[ -S "$socket" ] || fail "the daemon did not create $socket"

# Port plan: 5001 gnutls-serv --echo (file key), 5002 stunnel client to 5001, 5003 tlspoolctl
# serve --echo (token key), 5004 tlstunnel -s, 5005 plaintext echo, 5006 stunnel server.
# gnutls-serv prints every echoed line, so its standard output is discarded.
gnutls-serv --echo --priority "$priority" --x509certfile "$dev/peer-cert.pem" \
    --x509keyfile "$dev/peer-key.pem" --port 5001 >/dev/null 2>"$work/gnutls-serv.log" &
pids+=("$!")
wait_listening 5001

cat >"$work/stunnel-client.conf" <<EOF
foreground = yes
debug = err
pid =
[client]
client = yes
accept = 127.0.0.1:5002
connect = 127.0.0.1:5001
sslVersionMin = TLSv1.3
ciphersuites = $suite
CAfile = $dev/ca.pem
verifyChain = yes
checkHost = $peer
sni = $peer
EOF
start stunnel-client stunnel4 "$work/stunnel-client.conf"
wait_listening 5002

# --- 1. bulk throughput of one connection ------------------------------------------------
echo "== 1. bulk echo, $((bulk_bytes >> 20)) MiB per run, $repeats runs each"
declare -A bulk
for _ in $(seq 1 "$repeats"); do
    ticks0=$(cpu_ticks "$daemon_pid")
    line=$("$bench" bulk-pool "$socket" 127.0.0.1:5001 "$peer" "$bulk_bytes") ||
        fail "bulk-pool failed"
    ticks1=$(cpu_ticks "$daemon_pid")
    bulk[pool]+="$(field mib_per_s <<<"$line") "
    bulk[pool_cpu]+="$(awk -v t=$((ticks1 - ticks0)) -v s="$(field seconds <<<"$line")" \
        -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz / s }') "
    line=$("$bench" bulk-tls 127.0.0.1:5001 "$peer" "$dev/ca.pem" "$priority" "$bulk_bytes") ||
        fail "bulk-tls failed"
    bulk[direct]+="$(field mib_per_s <<<"$line") "
    line=$("$bench" bulk-tcp 127.0.0.1:5002 "$bulk_bytes") || fail "bulk-tcp to stunnel failed"
    bulk[stunnel]+="$(field mib_per_s <<<"$line") "
done
for key in pool direct stunnel pool_cpu; do
    bulk[$key]=$(tr ' ' '\n' <<<"${bulk[$key]}" | sed '/^$/d' | median)
done
echo "   pool ${bulk[pool]} MiB/s (daemon ${bulk[pool_cpu]} CPUs busy), direct ${bulk[direct]}, stunnel ${bulk[stunnel]}"

# Plaintext echo backend behind stunnel (5006) and tlstunnel (5004).
start echo-backend "$bench" echo-server 127.0.0.1:5005 600
wait_listening 5005
start tlstunnel "$bin/tlstunnel" -s -l 127.0.0.1:5004 -r 127.0.0.1:5005 -L "$local_id" \
    -S "$socket"
wait_listening 5004
cat >"$work/stunnel-server.conf" <<EOF
foreground = yes
debug = err
pid =
[server]
accept = 127.0.0.1:5006
connect = 127.0.0.1:5005
cert = $dev/peer-cert.pem
key = $dev/peer-key.pem
sslVersionMin = TLSv1.3
ciphersuites = $suite
EOF
start stunnel-server stunnel4 "$work/stunnel-server.conf"
wait_listening 5006

# --- 3. set-up latency ---------------------------------------------------------------------
# The peer is gnutls-serv --echo. NOTE: against stunnel as the peer, the pool received no echo
# on any latency connection in test runs, so that pairing is left out until the daemon is fixed.
echo "== 3. connect to first echoed byte, $latency_count sequential connections each"
line=$("$bench" latency-pool "$socket" 127.0.0.1:5001 "$peer" "$latency_count") ||
    fail "latency-pool failed"
lat_pool=$(field median_us <<<"$line")
lat_pool_failures=$(field failures <<<"$line")
line=$("$bench" latency-tls 127.0.0.1:5001 "$peer" "$dev/ca.pem" "$priority" "$latency_count") ||
    fail "latency-tls failed"
lat_direct=$(field median_us <<<"$line")
lat_direct_failures=$(field failures <<<"$line")
# gnutls-serv requests a client certificate, and the pool presents dev.example's, signing with
# the token key, while the direct client above presents none. This run has the direct client
# present peer.dev.example's with its file key, so both do the same handshake.
line=$(BENCH_CLIENT_CERT=$dev/peer-cert.pem BENCH_CLIENT_KEY=$dev/peer-key.pem \
    "$bench" latency-tls 127.0.0.1:5001 "$peer" "$dev/ca.pem" "$priority" "$latency_count") ||
    fail "latency-tls with a client certificate failed"
lat_direct_cert=$(field median_us <<<"$line")
# Prints the difference of two medians in microseconds, or none when either is missing.
added_us() {
    if [ "$1" = none ] || [ "$2" = none ]; then
        echo none
    else
        echo "+$(($1 - $2))"
    fi
}
lat_added=$(added_us "$lat_pool" "$lat_direct")
lat_added_cert=$(added_us "$lat_pool" "$lat_direct_cert")
echo "   pool median $lat_pool us, direct median $lat_direct us, added ${lat_added} us"
echo "   direct median with a client certificate $lat_direct_cert us, added ${lat_added_cert} us"
echo "   connections without an echo within 2 s: pool $lat_pool_failures, direct $lat_direct_failures"

# --- 2. full handshakes per second ---------------------------------------------------------
# Prints the connections per wall-clock second that openssl s_time reaches on port $1; more
# arguments go to s_time.
s_time_rate() {
    local port=$1 out
    shift
    out=$(timeout $((s_time_secs + 20)) openssl s_time -connect "127.0.0.1:$port" -new \
        -time "$s_time_secs" -tls1_3 -ciphersuites "$suite" "$@" 2>&1) || true
    sed -n 's/^\([0-9]*\) connections in \([0-9.]*\) real seconds.*/\1 \2/p' <<<"$out" |
        head -n 1 | awk '{ if ($2 > 0) printf "%.0f", $1 / $2 }'
}

echo "== 2. full handshakes, openssl s_time -new for $s_time_secs s each"
start serve "$bin/tlspoolctl" --socket "$socket" serve --listen 127.0.0.1:5003 \
    --local-id "$local_id" --echo
serve_pid=$last_pid
wait_listening 5003
# CPU milliseconds per handshake of the serving processes, from /proc/PID/stat (10 ms ticks).
ticks0=$(($(cpu_ticks "$daemon_pid") + $(cpu_ticks "$serve_pid")))
hs_pool=$(s_time_rate 5003)
ticks1=$(($(cpu_ticks "$daemon_pid") + $(cpu_ticks "$serve_pid")))
gnutls_pid=${pids[1]}
ticks2=$(cpu_ticks "$gnutls_pid")
hs_gnutls=$(s_time_rate 5001)
ticks3=$(cpu_ticks "$gnutls_pid")
hz=$(getconf CLK_TCK)
hs_pool_cpu=$(awk -v t=$((ticks1 - ticks0)) -v r="${hs_pool:-0}" -v s="$s_time_secs" -v hz="$hz" \
    'BEGIN { if (r > 0) printf "%.2f", 1000 * t / hz / (r * s) }')
hs_gnutls_cpu=$(awk -v t=$((ticks3 - ticks2)) -v r="${hs_gnutls:-0}" -v s="$s_time_secs" \
    -v hz="$hz" 'BEGIN { if (r > 0) printf "%.2f", 1000 * t / hz / (r * s) }')
[ -n "$hs_pool" ] && [ -n "$hs_gnutls" ] || fail "openssl s_time gave no rate"
echo "   pool (token key) $hs_pool/s, gnutls-serv (file key) $hs_gnutls/s"
echo "   server CPU per handshake: daemon plus tlspoolctl serve $hs_pool_cpu ms, gnutls-serv $hs_gnutls_cpu ms"
stop "$serve_pid"

# --- 5. tlstunnel -s versus stunnel as TLS server --------------------------------------------
echo "== 5. tlstunnel -s and stunnel in front of a plaintext echo backend"
# tlstunnel -s requires a client certificate, so both tunnels get one from the direct client.
export BENCH_CLIENT_CERT=$dev/peer-cert.pem BENCH_CLIENT_KEY=$dev/peer-key.pem
line=$("$bench" bulk-tls 127.0.0.1:5004 "$local_id" "$dev/ca.pem" "$priority" "$bulk_bytes") ||
    fail "bulk-tls to tlstunnel failed"
tun_bulk=$(field mib_per_s <<<"$line")
line=$("$bench" bulk-tls 127.0.0.1:5006 "$peer" "$dev/ca.pem" "$priority" "$bulk_bytes") ||
    fail "bulk-tls to stunnel failed"
stun_bulk=$(field mib_per_s <<<"$line")
tun_hs=$(s_time_rate 5004 -cert "$dev/peer-cert.pem" -key "$dev/peer-key.pem")
stun_hs=$(s_time_rate 5006 -cert "$dev/peer-cert.pem" -key "$dev/peer-key.pem")
echo "   tlstunnel $tun_bulk MiB/s, $tun_hs conn/s; stunnel $stun_bulk MiB/s, $stun_hs conn/s"

# --- 4. RSS per idle session -----------------------------------------------------------------
echo "== 4. daemon RSS with idle sessions (client and server ends of loopback pairs)"
declare -A idle_kib
for count in $idle_counts; do
    hold=$work/hold-$count
    touch "$hold"
    rss0=$(rss_kib "$daemon_pid")
    start "idle-$count" "$bench" idle "$socket" "$local_id" $((count / 2)) "$hold"
    idle_pid=$last_pid
    for _ in $(seq 1 2400); do
        grep -q '^established=' "$work/idle-$count.log" && break
        kill -0 "$idle_pid" 2>/dev/null || fail "bench idle $count exited early"
        sleep 0.1
    done
    grep -q '^established=' "$work/idle-$count.log" || fail "bench idle $count timed out"
    sleep 1
    rss1=$(rss_kib "$daemon_pid")
    # Each pair is two sessions in the daemon: the client and the server end.
    idle_kib[$count]=$(awk -v a="$rss0" -v b="$rss1" -v n="$count" \
        'BEGIN { printf "%.1f", (b - a) / n }')
    echo "   $count sessions: VmRSS $rss0 -> $rss1 KiB, ${idle_kib[$count]} KiB per session"
    rm -f "$hold"
    wait "$idle_pid" || fail "bench idle $count failed"
    sleep 1
done

# --- report --------------------------------------------------------------------------------
set -- $idle_counts
idle_small=$1 idle_large=$2
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
table=$(
    cat <<EOF
| Measurement | TLS Pool | Reference | Ratio | Target |
|---|---|---|---|---|
| 1. Bulk echo, one connection (MiB/s) | ${bulk[pool]} | direct GnuTLS ${bulk[direct]} | $(ratio "${bulk[pool]}" "${bulk[direct]}")× | ≥ 0.85× |
| 1. Bulk echo, one connection (MiB/s) | ${bulk[pool]} | stunnel client ${bulk[stunnel]} | $(ratio "${bulk[pool]}" "${bulk[stunnel]}")× | |
| 2. Full handshakes per second | $hs_pool (key on SoftHSM2) | gnutls-serv $hs_gnutls (key in file) | $(ratio "$hs_pool" "$hs_gnutls")× | ≥ 0.7× |
| 2. Server CPU per handshake (ms) | $hs_pool_cpu (daemon and tlspoolctl serve) | gnutls-serv $hs_gnutls_cpu | | |
| 3. Median connect to first byte (µs) | $lat_pool | direct GnuTLS $lat_direct | $lat_added µs | ≤ +150 µs |
| 3. The same, both presenting a client certificate (µs) | $lat_pool (key on SoftHSM2) | direct GnuTLS $lat_direct_cert (key in file) | $lat_added_cert µs | |
| 3. Connections without an echo in 2 s | $lat_pool_failures of $latency_count | $lat_direct_failures of $latency_count | | 0 |
| 4. RSS per idle session, $idle_small sessions (KiB) | ${idle_kib[$idle_small]} | | | ≤ 48 |
| 4. RSS per idle session, $idle_large sessions (KiB) | ${idle_kib[$idle_large]} | | | ≤ 48 |
| 5. Server tunnel bulk echo (MiB/s) | tlstunnel $tun_bulk | stunnel $stun_bulk | $(ratio "$tun_bulk" "$stun_bulk")× | |
| 5. Server tunnel connections per second | tlstunnel $tun_hs | stunnel $stun_hs | $(ratio "$tun_hs" "$stun_hs")× | |
EOF
)
echo
echo "$table"

doc=$repo/docs/BENCHMARKS.md
if [ -f "$doc" ] && grep -q '^<!-- results:begin -->$' "$doc"; then
    {
        echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($cpu), load average"
        echo "$load_start at the start (other work on the machine skews every number), with"
        echo "\`${BENCH_QUICK:+BENCH_QUICK=1 }bash bench/run.sh\`; bulk runs of $((bulk_bytes >> 20)) MiB (median of"
        echo "$repeats), $latency_count latency samples, s_time runs of $s_time_secs s. During the pool's bulk"
        echo "runs the daemon kept ${bulk[pool_cpu]} CPUs busy (user plus system time from \`/proc/PID/stat\`)."
        echo
        echo "$table"
    } >"$work/results.md"
    awk -v results="$work/results.md" '
        /^<!-- results:end -->$/ { while ((getline line < results) > 0) print line; skip = 0 }
        !skip { print }
        /^<!-- results:begin -->$/ { skip = 1 }
    ' "$doc" >"$work/BENCHMARKS.md"
    cp "$work/BENCHMARKS.md" "$doc"
    echo "== rewrote the results section of docs/BENCHMARKS.md"
fi

# --- 6. DTLS echo ------------------------------------------------------------------------------
# bench/dtls.sh starts its own daemon and gnutls-serv --udp in this namespace and rewrites the
# DTLS results section of docs/BENCHMARKS.md.
stop "$daemon_pid"
BENCH_SKIP_BUILD=1 bash "$repo/bench/dtls.sh"
