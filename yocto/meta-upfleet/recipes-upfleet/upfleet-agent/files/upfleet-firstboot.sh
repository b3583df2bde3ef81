#!/bin/sh
# Upfleet first-boot steps around `upfleet-agent provision`, run by
# upfleet-provision.service as user upfleet. Idempotent.
#
#   prepare  the device ID (when agent.json leaves deviceId empty: from
#            /etc/machine-id, kept in /var/lib/upfleet/device.env) and the
#            passphrase that encrypts the device key at rest
#   done     marks the device provisioned, so the unit does not run again
set -eu

CONFIG=/etc/upfleet/agent.json
STATE=/var/lib/upfleet
umask 077

case "${1:-}" in
prepare)
    mkdir -p "$STATE/keys"
    if grep -q '"deviceId": ""' "$CONFIG" && [ ! -s "$STATE/device.env" ]; then
        id=$(cat /etc/machine-id 2>/dev/null || true)
        case "$id" in
        ''|*[!0-9a-f]*) echo "upfleet-firstboot: no usable /etc/machine-id for the device ID" >&2; exit 1 ;;
        esac
        printf 'UPFLEET_DEVICE_ID=%s\n' "$id" > "$STATE/device.env.tmp"
        mv "$STATE/device.env.tmp" "$STATE/device.env"
    fi
    if grep -q "\"keyPassphraseFile\": \"$STATE/keys/passphrase\"" "$CONFIG" && [ ! -s "$STATE/keys/passphrase" ]; then
        od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$STATE/keys/passphrase.tmp"
        mv "$STATE/keys/passphrase.tmp" "$STATE/keys/passphrase"
    fi
    ;;
done)
    touch "$STATE/provisioned"
    ;;
*)
    echo "usage: $0 prepare|done" >&2
    exit 2
    ;;
esac
