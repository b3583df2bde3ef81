#!/bin/sh
# upfleet-agent: runs the Upfleet agent (compiled to JavaScript at build time)
# with the image's Node.js. The device ID and primary serial made at first boot,
# when agent.json does not name them, come from /var/lib/upfleet/device.env, so
# `upfleet-agent status` from a shell works on a fleet image as the unit does.
if [ -r /var/lib/upfleet/device.env ]; then
    device_id=${UPFLEET_DEVICE_ID:-}
    primary_serial=${UPFLEET_PRIMARY_SERIAL:-}
    . /var/lib/upfleet/device.env
    # What the caller set wins over the file.
    [ -z "$device_id" ] || UPFLEET_DEVICE_ID=$device_id
    [ -z "$primary_serial" ] || UPFLEET_PRIMARY_SERIAL=$primary_serial
    [ -z "${UPFLEET_DEVICE_ID:-}" ] || export UPFLEET_DEVICE_ID
    [ -z "${UPFLEET_PRIMARY_SERIAL:-}" ] || export UPFLEET_PRIMARY_SERIAL
fi
exec @NODE@ @MAIN@ "$@"
