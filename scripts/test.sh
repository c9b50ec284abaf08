#!/usr/bin/env bash
# Run every check and test of the TLS Pool workspace: formatting, lints, docs, unit and
# integration tests against real servers on loopback, man pages and the fuzz targets' build.
#
# Installs what it needs first (Debian packages, cargo-fuzz), so it works on a fresh
# Debian 12 machine as root. Servers the tests need are started by the tests themselves.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n== %s\n' "$*"; }

step "installing Debian packages"
bash scripts/install-deps.sh

step "formatting"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building binaries for the integration tests"
cargo build --workspace --bins --locked

step "tests (in a private network namespace with only loopback)"
TLSPOOL_TESTS_PREBUILT=1 bash scripts/netns-run.sh cargo test --workspace --locked --no-fail-fast

step "docs"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked --quiet

step "man pages"
for page in man/*.[0-9]; do
    out=$(groff -man -ww -z "$page" 2>&1) || { echo "$page: groff failed" >&2; exit 1; }
    if [ -n "$out" ]; then
        printf '%s: groff warnings:\n%s\n' "$page" "$out" >&2
        exit 1
    fi
done

if [ -d fuzz ]; then
    step "fuzz targets"
    bash scripts/fuzz.sh
fi

step "all checks passed"
