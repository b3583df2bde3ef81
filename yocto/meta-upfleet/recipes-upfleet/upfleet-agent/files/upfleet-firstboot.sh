#!/bin/sh
# Upfleet first-boot steps around `upfleet-agent provision`, run by
# upfleet-provision.service as user upfleet. Idempotent.
#
#   prepare  the device ID and the primary ECU serial (when agent.json leaves
#            them empty: from /etc/machine-id, kept in /var/lib/upfleet/device.env)
#            and the passphrase that encrypts the device key at rest
#   done     marks the device provisioned, so the unit does not run again
set -eu

# The paths can be moved for tests only; the units never set these.
CONFIG=${UPFLEET_FIRSTBOOT_CONFIG:-/etc/upfleet/agent.json}
STATE=${UPFLEET_FIRSTBOOT_STATE:-/var/lib/upfleet}
MACHINE_ID=${UPFLEET_FIRSTBOOT_MACHINE_ID:-/etc/machine-id}
umask 077

case "${1:-}" in
prepare)
    mkdir -p "$STATE/keys"
    id=$(cat "$MACHINE_ID" 2>/dev/null || true)
    case "$id" in
    ''|*[!0-9a-f]*) id='' ;;
    esac
    # device.env is written once, whole: the IDs a device registers with never change.
    if [ ! -s "$STATE/device.env" ]; then
        : > "$STATE/device.env.tmp"
        if grep -q '"deviceId": ""' "$CONFIG"; then
            [ -n "$id" ] || { echo "upfleet-firstboot: no usable $MACHINE_ID for the device ID" >&2; exit 1; }
            printf 'UPFLEET_DEVICE_ID=%s\n' "$id" >> "$STATE/device.env.tmp"
        fi
        # Secondaries always have serials, so an empty one is the primary's.
        if grep -q '"serial": ""' "$CONFIG"; then
            [ -n "$id" ] || { echo "upfleet-firstboot: no usable $MACHINE_ID for the primary serial" >&2; exit 1; }
            printf 'UPFLEET_PRIMARY_SERIAL=%s-primary\n' "$id" >> "$STATE/device.env.tmp"
        fi
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
