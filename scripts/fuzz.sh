#!/usr/bin/env bash
# Build every cargo-fuzz target and run each briefly (FUZZ_SECONDS, default 20).
#
# cargo-fuzz needs nightly compiler flags. The nightly toolchain is used when rustup has it;
# otherwise the stable compiler runs with RUSTC_BOOTSTRAP=1, which unlocks the same flags.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-20}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi

if cargo +nightly --version >/dev/null 2>&1; then
    fuzz() { cargo +nightly fuzz "$@"; }
else
    fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi

fuzz build
for target in $(fuzz list); do
    mkdir -p "corpus/$target"
    echo "fuzzing $target for ${seconds}s"
    fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" 2>&1 | tail -n 2
done
