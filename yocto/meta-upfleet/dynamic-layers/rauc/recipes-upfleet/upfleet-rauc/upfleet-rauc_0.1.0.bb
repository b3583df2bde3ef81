SUMMARY = "Lets the Upfleet agent install the gateway's updates through RAUC"
DESCRIPTION = "A D-Bus policy that lets the agent's unprivileged user call RAUC's \
service (install, status, mark), and the RAUC installer wiring: the agent marks a \
new slot good only after its own health check, so rauc-mark-good must not be installed."
HOMEPAGE = "https://github.com/upfleet/upfleet"
SECTION = "console/network"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

SRC_URI = "file://upfleet-rauc-dbus.conf"

# scarthgap (5.0) has no UNPACKDIR and unpacks into WORKDIR.
UPFLEET_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
S = "${UPFLEET_UNPACKDIR}"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -D -m 0644 ${UPFLEET_UNPACKDIR}/upfleet-rauc-dbus.conf \
        ${D}${datadir}/dbus-1/system.d/upfleet-rauc.conf
}

FILES:${PN} = "${datadir}/dbus-1/system.d/upfleet-rauc.conf"
RDEPENDS:${PN} = "rauc upfleet-agent"
# rauc-mark-good marks every slot good at boot: it would bypass the agent's health
# check. Leave it out with BAD_RECOMMENDATIONS += "rauc-mark-good" (rauc recommends it).
RCONFLICTS:${PN} = "rauc-mark-good"
