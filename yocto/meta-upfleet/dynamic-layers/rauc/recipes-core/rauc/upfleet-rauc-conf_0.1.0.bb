SUMMARY = "RAUC system configuration for an Upfleet A/B gateway"
DESCRIPTION = "system.conf for two root slots (A and B) and RAUC's data directory on \
the data partition the agent's state shares, plus the keyring bundles are checked \
against. Select it with PREFERRED_RPROVIDER_virtual-rauc-conf = \"upfleet-rauc-conf\"."
HOMEPAGE = "https://github.com/upfleet/upfleet"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# Same compatible string as the bundles (upfleet-gateway-bundle).
UPFLEET_RAUC_COMPATIBLE ??= "${MACHINE}${TARGET_VENDOR}"
UPFLEET_RAUC_BOOTLOADER ?= "grub"
UPFLEET_RAUC_SLOT_A ?= "/dev/disk/by-partlabel/rootfs-a"
UPFLEET_RAUC_SLOT_B ?= "/dev/disk/by-partlabel/rootfs-b"
UPFLEET_RAUC_SLOT_FSTYPE ?= "ext4"
# RAUC's status on the shared data partition (mounted at /var/lib/upfleet).
UPFLEET_RAUC_DATA_DIRECTORY ?= "/var/lib/upfleet/rauc"
# The CA certificate(s) bundles must be signed under; a build-host path.
RAUC_KEYRING_FILE ??= ""

RPROVIDES:${PN} += "virtual-rauc-conf"
RCONFLICTS:${PN} = "rauc-conf"
INHIBIT_DEFAULT_DEPS = "1"
inherit allarch

# scarthgap (5.0) has no UNPACKDIR and unpacks into WORKDIR.
UPFLEET_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
S = "${UPFLEET_UNPACKDIR}"
B = "${WORKDIR}/build"
do_configure[noexec] = "1"

python do_compile() {
    import os
    keyring = d.getVar("RAUC_KEYRING_FILE")
    if not keyring or not os.path.isfile(keyring):
        bb.fatal("upfleet-rauc-conf: RAUC_KEYRING_FILE=%r: set it to the build-host path of the CA "
                 "certificate that signs your bundles" % keyring)
    slot = lambda n, dev, boot: ("[slot.rootfs.%d]\ndevice=%s\ntype=%s\nbootname=%s\n"
                                 % (n, dev, d.getVar("UPFLEET_RAUC_SLOT_FSTYPE"), boot))
    conf = ("# Written by upfleet-rauc-conf (meta-upfleet).\n"
            "[system]\ncompatible=%s\nbootloader=%s\ndata-directory=%s\nbundle-formats=-plain\n\n"
            "[keyring]\npath=keyring.pem\n\n" % (d.getVar("UPFLEET_RAUC_COMPATIBLE"),
                                                 d.getVar("UPFLEET_RAUC_BOOTLOADER"),
                                                 d.getVar("UPFLEET_RAUC_DATA_DIRECTORY"))
            + slot(0, d.getVar("UPFLEET_RAUC_SLOT_A"), "A") + "\n" + slot(1, d.getVar("UPFLEET_RAUC_SLOT_B"), "B"))
    os.makedirs(d.getVar("B"), exist_ok=True)
    with open(os.path.join(d.getVar("B"), "system.conf"), "w") as f:
        f.write(conf)
}
do_compile[file-checksums] += "${@'%s:True' % d.getVar('RAUC_KEYRING_FILE') if d.getVar('RAUC_KEYRING_FILE') else ''}"

do_install() {
    install -D -m 0644 ${B}/system.conf ${D}${nonarch_libdir}/rauc/system.conf
    install -m 0644 ${RAUC_KEYRING_FILE} ${D}${nonarch_libdir}/rauc/keyring.pem
}

FILES:${PN} = "${nonarch_libdir}/rauc"
