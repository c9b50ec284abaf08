#!/usr/bin/env bash
# Run pcscd with a virtual OpenPGP card in a private namespace, for tests and development.
#
# Usage: virtual-card.sh DIR [COMMAND [ARG...]]
#
# Starts pcscd with the vpcd reader driver and the tlspool-virtual-card bridge, an empty
# OpenPGP card with user PIN 123456 and admin PIN 12345678. Both run inside a private network
# namespace whose only interface is loopback, because vpcd listens on every interface (ports
# 35963 and 35964).
# A private mount namespace puts pcscd's socket at DIR/run/pcscd.comm instead of
# /run/pcscd/pcscd.comm, so several cards can run at once beside a system pcscd. Clients
# outside the namespaces reach the card through that socket when PCSCLITE_CSOCK_NAME names it.
#
# Once the card is in the reader, prints the line PCSCLITE_CSOCK_NAME=DIR/run/pcscd.comm.
# With a COMMAND, runs it with that variable exported, stops the card and exits with the
# command's status. Without one, keeps the card until standard input reaches end of file or
# pcscd has had no client for 60 s.
# The bridge binary is TLSPOOL_VIRTUAL_CARD when set, else target/debug/tlspool-virtual-card.
# Needs root (unshare, mount).
set -euo pipefail

if [ "$#" -lt 1 ]; then
    echo "usage: virtual-card.sh DIR [COMMAND [ARG...]]" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
card=${TLSPOOL_VIRTUAL_CARD:-$here/../target/debug/tlspool-virtual-card}
for tool in pcscd opensc-tool unshare; do
    if ! command -v "$tool" >/dev/null; then
        echo "virtual-card.sh: $tool not found; run scripts/install-deps.sh" >&2
        exit 1
    fi
done
if [ ! -x "$card" ]; then
    echo "virtual-card.sh: $card not found; run cargo build -p tlspool-tests --bins" >&2
    exit 1
fi
vpcd_driver=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
if [ ! -e "$vpcd_driver" ]; then
    echo "virtual-card.sh: $vpcd_driver not found; install vsmartcard-vpcd" >&2
    exit 1
fi

mkdir -p "$1/reader.conf.d" "$1/run"
dir=$(cd "$1" && pwd)
shift
# The mount point for the private socket directory must exist outside the namespace.
mkdir -p /run/pcscd
cat >"$dir/reader.conf.d/vpcd" <<CONF
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      $vpcd_driver
CHANNELID    0x8C7B
CONF

# The rest of the script runs inside the new namespaces.
export VIRTUAL_CARD_DIR=$dir VIRTUAL_CARD_BIN=$card
exec unshare --net --mount -- bash -c '
set -euo pipefail
dir=$VIRTUAL_CARD_DIR
ip link set lo up
mount --bind "$dir/run" /run/pcscd
socket=$dir/run/pcscd.comm
rm -f "$socket"

# --auto-exit ends pcscd 60 s after its last client leaves, so a card whose caller was killed
# does not stay behind.
pcscd --foreground --error --auto-exit --config "$dir/reader.conf.d" >"$dir/pcscd.log" 2>&1 &
pcscd_pid=$!
"$VIRTUAL_CARD_BIN" >"$dir/card.log" 2>&1 &
card_pid=$!

stop() {
    kill "$pcscd_pid" 2>/dev/null || true
    wait "$pcscd_pid" 2>/dev/null || true
    # The bridge exits by itself when pcscd closes the vpcd connection.
    wait "$card_pid" 2>/dev/null || true
}
trap stop EXIT

# pcscd polls the reader and reports the card about 0.5 s after the bridge connects.
export PCSCLITE_CSOCK_NAME=$socket
for _ in $(seq 200); do
    if [ -S "$socket" ] && opensc-tool --list-readers 2>/dev/null | grep -q "Yes.*Virtual PCD 00 00"; then
        break
    fi
    if ! kill -0 "$pcscd_pid" 2>/dev/null || ! kill -0 "$card_pid" 2>/dev/null; then
        echo "virtual-card.sh: pcscd or the card exited early; see $dir/pcscd.log and $dir/card.log" >&2
        exit 1
    fi
    sleep 0.05
done
if ! opensc-tool --list-readers 2>/dev/null | grep -q "Yes.*Virtual PCD 00 00"; then
    echo "virtual-card.sh: no card in the reader after 10 s; see $dir/pcscd.log and $dir/card.log" >&2
    exit 1
fi
echo "PCSCLITE_CSOCK_NAME=$socket"

if [ "$#" -gt 0 ]; then
    status=0
    "$@" || status=$?
    exit "$status"
fi
cat >/dev/null
' virtual-card "$@"
