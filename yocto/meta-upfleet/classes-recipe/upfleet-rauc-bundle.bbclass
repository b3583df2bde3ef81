# upfleet-rauc-bundle: a RAUC bundle for the gateway (meta-rauc's bundle class),
# and the Upfleet target it is published as: <bundle>.upfleet-target.json next
# to the bundle in DEPLOY_DIR_IMAGE, with its length and hashes, the hardware ID
# the agent matches, the version and the release counter of this build, and the
# `upfleet-repo add-target` command that publishes it (lib/upfleet/bundletarget.py).
#
#   inherit upfleet-rauc-bundle
#   RAUC_SLOT_rootfs = "my-gateway-image"
#   UPFLEET_RELEASE_COUNTER = "12"      # grows with every release
#
# Needs meta-rauc (BBFILES_DYNAMIC puts this layer's bundle recipe in only then).

inherit bundle

RAUC_BUNDLE_SLOTS ??= "rootfs"
# verity: RAUC checks every block it reads; the agent checks the whole file first.
RAUC_BUNDLE_FORMAT ??= "verity"

# Must equal the gateway's hardware ID in the agent configuration.
UPFLEET_TARGET_HARDWARE_ID ??= "${UPFLEET_PRIMARY_HARDWARE_ID}"
UPFLEET_PRIMARY_HARDWARE_ID ??= "${MACHINE}"
# SemVer 2.0.0 (the image repository requires it).
UPFLEET_TARGET_VERSION ??= "${RAUC_BUNDLE_VERSION}"
# A whole number that grows with every release: the agent refuses a lower one (rollback).
UPFLEET_RELEASE_COUNTER ??= ""
UPFLEET_TARGET_NAME ??= "${BUNDLE_BASENAME}-${MACHINE}-${UPFLEET_TARGET_VERSION}${BUNDLE_EXTENSION}"

python do_upfleet_target() {
    import os
    from upfleet import bundletarget

    bundle = os.path.join(d.getVar("B"), "bundle.raucb")
    try:
        target = bundletarget.describe(bundle, d.getVar("UPFLEET_TARGET_NAME"),
                                       d.getVar("UPFLEET_TARGET_HARDWARE_ID"),
                                       d.getVar("UPFLEET_TARGET_VERSION"),
                                       d.getVar("UPFLEET_RELEASE_COUNTER"))
    except bundletarget.ConfigError as e:
        bb.fatal("%s: %s" % (d.getVar("PN"), e))
    with open(os.path.join(d.getVar("B"), "upfleet-target.json"), "w") as f:
        f.write(bundletarget.dumps(target))
}
addtask upfleet_target after do_bundle before do_deploy

do_deploy:append() {
    install -m 0644 ${B}/upfleet-target.json ${DEPLOYDIR}/${BUNDLE_NAME}.upfleet-target.json
    ln -sf ${BUNDLE_NAME}.upfleet-target.json ${DEPLOYDIR}/${BUNDLE_LINK_NAME}.upfleet-target.json
}
