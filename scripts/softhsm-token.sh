#!/usr/bin/env bash
# Create a SoftHSM2 token for tests and development.
#
# Usage: softhsm-token.sh DIR LABEL PIN SOPIN
#
# Writes DIR/softhsm2.conf (file object store, tokens under DIR/tokens), initialises a token
# labelled LABEL in the first free slot with the given user PIN and security-officer PIN, and
# prints the line SOFTHSM2_CONF=DIR/softhsm2.conf for the caller to export. Running it again
# with the same DIR adds another token beside the existing ones.
set -euo pipefail

if [ "$#" -ne 4 ]; then
    echo "usage: softhsm-token.sh DIR LABEL PIN SOPIN" >&2
    exit 2
fi
dir=$1 label=$2 pin=$3 so_pin=$4

if ! command -v softhsm2-util >/dev/null; then
    echo "softhsm-token.sh: softhsm2-util not found; install the softhsm2 package" >&2
    exit 1
fi

mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
conf="$dir/softhsm2.conf"
cat >"$conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
CONF

SOFTHSM2_CONF=$conf softhsm2-util --init-token --free --label "$label" \
    --so-pin "$so_pin" --pin "$pin" >/dev/null
echo "SOFTHSM2_CONF=$conf"
