#!/usr/bin/env bash
# Run a command in a private network namespace whose only interface is loopback.
#
# Some test peers (gnutls-serv, the vpcd card reader) listen on every interface and have no
# option to bind loopback alone; inside this namespace every interface is loopback, so nothing
# they open is reachable from outside the machine. Needs root (unshare).
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: netns-run.sh COMMAND [ARG...]" >&2
    exit 2
fi
exec unshare --net -- sh -c 'ip link set lo up && exec "$@"' netns-run "$@"
