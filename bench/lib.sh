# Helpers of the bench scripts, sourced after they set `work` (a scratch directory) and `pids`
# (an array of the PIDs of every process they started).

# Stops every process in `pids` and removes `work`; the scripts run it on exit.
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

# Prints $* and the end of every log in `work`, then exits with status 1.
fail() {
    echo "bench: $*" >&2
    for log in "$work"/*.log; do
        [ -s "$log" ] || continue
        echo "--- $log" >&2
        tail -n 15 "$log" | cut -c 1-200 >&2
    done
    exit 1
}

# Prints the value of key $1 from a `key=value ...` line on standard input.
field() {
    tr ' ' '\n' | sed -n "s/^$1=//p"
}

# Prints the user plus system CPU time of process $1 in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Prints the median of the numbers on standard input, one a line.
median() {
    sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# Prints $1 / $2 with two decimals.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

# Stops process $1 and waits for it.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
