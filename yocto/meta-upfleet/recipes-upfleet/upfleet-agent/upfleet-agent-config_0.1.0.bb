SUMMARY = "Upfleet agent configuration and trusted root metadata"
DESCRIPTION = "/etc/upfleet/agent.json built from UPFLEET_* variables, and the \
director and image repository root metadata the device trusts first. Public \
data only: the device key is generated on the device at first boot."
HOMEPAGE = "https://github.com/upfleet/upfleet"
SECTION = "console/network"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# Deployment settings; set them in local.conf, a distro or a bbappend.
# Required: the two server URLs, the primary ECU, and the root metadata (see
# README.md). They are checked when the package is built, not at parse time.
UPFLEET_DIRECTOR_URL ?= ""
UPFLEET_IMAGE_REPO_URL ?= ""
UPFLEET_MQTT_URL ?= ""
UPFLEET_MQTT_TOPIC_PREFIX ?= ""
UPFLEET_POLL_INTERVAL ?= "300"
# Empty: each device takes its ID from /etc/machine-id at first boot.
UPFLEET_DEVICE_ID ?= ""
UPFLEET_PRIMARY_SERIAL ?= ""
UPFLEET_PRIMARY_HARDWARE_ID ?= "${MACHINE}"
# How the primary installs its own image: "rauc" (A/B bundles through RAUC's
# service; the default with meta-rauc's "rauc" distro feature) or "handler"
# (UPFLEET_PRIMARY_INSTALL_COMMAND, docs/install-handlers.md).
UPFLEET_PRIMARY_INSTALLER ?= "${@bb.utils.contains('DISTRO_FEATURES', 'rauc', 'rauc', 'handler', d)}"
UPFLEET_PRIMARY_INSTALL_COMMAND ?= ""
UPFLEET_PRIMARY_INSTALL_TIMEOUT ?= ""
# RAUC: the agent runs unprivileged; upfleet-reboot.path restarts the machine
# when this file appears. Empty health check: healthy once the director answers.
UPFLEET_RAUC_REBOOT_COMMAND ?= "touch /run/upfleet/reboot-request"
UPFLEET_RAUC_HEALTH_CHECK ?= ""
# The data partition both slots share, mounted at /var/lib/upfleet (agent
# state, device key, RAUC's data-directory). Empty: the image provides the
# mount some other way (fstab, wic), or there is no A/B.
UPFLEET_DATA_DEVICE ?= ""
UPFLEET_DATA_FSTYPE ?= "ext4"
# Space-separated serial,hardwareId,port[,baud[,verification]]
UPFLEET_SECONDARIES ?= ""
# Made at first boot next to the key; empty leaves it out of agent.json (then
# give the passphrase as a systemd credential, see README.md).
UPFLEET_KEY_PASSPHRASE_FILE ?= "/var/lib/upfleet/keys/passphrase"
# Build-host paths of root.json files, or of a provisioning bundle (a
# directory or tarball holding director-root.json and image-repo-root.json).
UPFLEET_DIRECTOR_ROOT ?= ""
UPFLEET_IMAGE_REPO_ROOT ?= ""
UPFLEET_PROVISIONING_BUNDLE ?= ""
# "1" builds an image without root metadata (development only): the agent
# then has no trust anchor until one is put in /etc/upfleet by other means.
UPFLEET_ALLOW_MISSING_ROOTS ?= "0"
# Optional build-host file holding the fleet's provisioning token. It goes to
# /etc/upfleet/provisioning.env (root only), read by upfleet-provision.service.
# Empty: the token is supplied per device (/var/lib/upfleet/provisioning.env).
UPFLEET_PROVISIONING_TOKEN_FILE ?= ""

SRC_URI = "file://agent.json"

# scarthgap (5.0) has no UNPACKDIR and unpacks into WORKDIR.
UPFLEET_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
S = "${UPFLEET_UNPACKDIR}"
B = "${WORKDIR}/build"

# The configuration names the machine (hardware ID) and the deployment.
PACKAGE_ARCH = "${MACHINE_ARCH}"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# Root metadata files on the build host: a changed file rebuilds the package.
def upfleet_input_checksums(d):
    import os
    paths = [d.getVar(v) for v in ("UPFLEET_DIRECTOR_ROOT", "UPFLEET_IMAGE_REPO_ROOT",
                                   "UPFLEET_PROVISIONING_BUNDLE", "UPFLEET_PROVISIONING_TOKEN_FILE")]
    return " ".join("%s:%s" % (p, os.path.exists(p)) for p in paths if p)

# Checked here, not at parse time: a layer that is only parsed needs no settings.
python upfleet_write_config() {
    import json
    import os
    from upfleet import agentconfig

    out = os.path.join(d.getVar("B"), "etc")
    bb.utils.remove(out, recurse=True)
    bb.utils.mkdirhier(out)

    values = {
        "UPFLEET_DIRECTOR_URL": d.getVar("UPFLEET_DIRECTOR_URL"),
        "UPFLEET_IMAGE_REPO_URL": d.getVar("UPFLEET_IMAGE_REPO_URL"),
        "UPFLEET_MQTT_URL": d.getVar("UPFLEET_MQTT_URL"),
        "UPFLEET_MQTT_TOPIC_PREFIX": d.getVar("UPFLEET_MQTT_TOPIC_PREFIX"),
        "UPFLEET_POLL_INTERVAL": d.getVar("UPFLEET_POLL_INTERVAL"),
        "UPFLEET_DEVICE_ID": d.getVar("UPFLEET_DEVICE_ID"),
        "UPFLEET_PRIMARY_SERIAL": d.getVar("UPFLEET_PRIMARY_SERIAL"),
        "UPFLEET_PRIMARY_HARDWARE_ID": d.getVar("UPFLEET_PRIMARY_HARDWARE_ID"),
        "UPFLEET_PRIMARY_INSTALLER": d.getVar("UPFLEET_PRIMARY_INSTALLER"),
        "UPFLEET_PRIMARY_INSTALL_COMMAND": d.getVar("UPFLEET_PRIMARY_INSTALL_COMMAND"),
        "UPFLEET_RAUC_REBOOT_COMMAND": d.getVar("UPFLEET_RAUC_REBOOT_COMMAND"),
        "UPFLEET_RAUC_HEALTH_CHECK": d.getVar("UPFLEET_RAUC_HEALTH_CHECK"),
        "UPFLEET_PRIMARY_INSTALL_TIMEOUT": d.getVar("UPFLEET_PRIMARY_INSTALL_TIMEOUT"),
        "UPFLEET_KEY_PASSPHRASE_FILE": d.getVar("UPFLEET_KEY_PASSPHRASE_FILE"),
        "UPFLEET_SECONDARIES": d.getVar("UPFLEET_SECONDARIES"),
    }
    try:
        with open(os.path.join(d.getVar("S"), "agent.json")) as f:
            template = json.load(f)
        config = agentconfig.build(template, values)
        with open(os.path.join(out, "agent.json"), "w") as f:
            f.write(agentconfig.dumps(config))
        with open(os.path.join(out, "50-serial-ports.conf"), "w") as f:
            f.write(agentconfig.serial_dropin(config))
        if d.getVar("UPFLEET_DATA_DEVICE"):
            with open(os.path.join(out, "var-lib-upfleet.mount"), "w") as f:
                f.write(agentconfig.data_mount(d.getVar("UPFLEET_DATA_DEVICE"), d.getVar("UPFLEET_DATA_FSTYPE")))

        try:
            roots = agentconfig.collect_roots(d.getVar("UPFLEET_DIRECTOR_ROOT"),
                                              d.getVar("UPFLEET_IMAGE_REPO_ROOT"),
                                              d.getVar("UPFLEET_PROVISIONING_BUNDLE"))
        except agentconfig.ConfigError as e:
            if not bb.utils.to_boolean(d.getVar("UPFLEET_ALLOW_MISSING_ROOTS")):
                raise
            bb.warn("upfleet-agent-config: %s; UPFLEET_ALLOW_MISSING_ROOTS is set, so the image "
                    "has no trusted root metadata" % e)
            roots = {}
        for name, data in roots.items():
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)

        token_file = d.getVar("UPFLEET_PROVISIONING_TOKEN_FILE")
        if token_file:
            with open(os.path.join(out, "provisioning.env"), "w") as f:
                f.write(agentconfig.token_env(token_file))
    except agentconfig.ConfigError as e:
        bb.fatal("upfleet-agent-config: %s" % e)
}
do_install[prefuncs] += "upfleet_write_config"
do_install[file-checksums] += "${@upfleet_input_checksums(d)}"

do_install() {
    install -d ${D}${sysconfdir}/upfleet
    install -m 0644 ${B}/etc/agent.json ${D}${sysconfdir}/upfleet/agent.json
    for root in director-root.json image-repo-root.json; do
        if [ -f ${B}/etc/$root ]; then
            install -m 0644 ${B}/etc/$root ${D}${sysconfdir}/upfleet/$root
        fi
    done
    if [ -f ${B}/etc/provisioning.env ]; then
        install -m 0600 ${B}/etc/provisioning.env ${D}${sysconfdir}/upfleet/provisioning.env
    fi
    install -D -m 0644 ${B}/etc/50-serial-ports.conf \
        ${D}${systemd_system_unitdir}/upfleet-agent.service.d/50-serial-ports.conf
    if [ -f ${B}/etc/var-lib-upfleet.mount ]; then
        install -D -m 0644 ${B}/etc/var-lib-upfleet.mount ${D}${systemd_system_unitdir}/var-lib-upfleet.mount
    fi
}

FILES:${PN} = "${sysconfdir}/upfleet ${systemd_system_unitdir}"
CONFFILES:${PN} = "${sysconfdir}/upfleet/agent.json"
