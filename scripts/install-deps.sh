#!/usr/bin/env bash
# Install the Debian packages that building and testing the TLS Pool need.
#
# Package installs must never start system services: a refusing policy-rc.d keeps Debian's
# slapd, memcached, nsd and pcscd from listening, because every test starts its own servers.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (it calls apt-get)" >&2
    exit 1
fi

if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
fi

packages=(
    # build
    libgnutls28-dev nettle-dev libclang-dev libpcsclite-dev pkg-config
    # real peers and servers for the tests
    gnutls-bin openssl curl softhsm2 opensc slapd ldap-utils memcached nsd ldnsutils
    pcscd vsmartcard-vpcd stunnel4 python3 iproute2
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
