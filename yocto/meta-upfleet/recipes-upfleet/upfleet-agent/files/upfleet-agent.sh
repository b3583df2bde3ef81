#!/bin/sh
# upfleet-agent: runs the Upfleet agent (compiled to JavaScript at build time)
# with the image's Node.js. The device ID made at first boot, when agent.json
# does not name one, comes from /var/lib/upfleet/device.env.
if [ -z "${UPFLEET_DEVICE_ID:-}" ] && [ -r /var/lib/upfleet/device.env ]; then
    . /var/lib/upfleet/device.env
    export UPFLEET_DEVICE_ID
fi
exec @NODE@ @MAIN@ "$@"
