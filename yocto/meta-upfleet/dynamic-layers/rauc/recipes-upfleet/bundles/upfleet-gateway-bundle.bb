SUMMARY = "RAUC bundle of the gateway image, published as an Upfleet target"
DESCRIPTION = "Bundles RAUC_SLOT_rootfs for the gateway's A/B slots and writes the \
Upfleet target description next to it (upfleet-rauc-bundle.bbclass)."
LICENSE = "MIT"

inherit upfleet-rauc-bundle

RAUC_BUNDLE_COMPATIBLE ?= "${UPFLEET_RAUC_COMPATIBLE}"
UPFLEET_RAUC_COMPATIBLE ??= "${MACHINE}${TARGET_VENDOR}"
# The image recipe the rootfs slot gets; set it to your gateway image.
RAUC_SLOT_rootfs ?= "core-image-minimal"
