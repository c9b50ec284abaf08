#!/usr/bin/env bash
# Build every cargo-fuzz target and run each briefly (FUZZ_SECONDS, default 20).
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-20}

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi

cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" \
        -print_final_stats=0 2>&1 | tail -n 3
done
