#
# SPDX-License-Identifier: MIT
#
"""Build /etc/upfleet/agent.json and pick the trusted root metadata to bake
into the image.

Invariants:
- What goes into the image is public: the configuration and the two root.json
  files (plus, only if the integrator asks for it, the fleet's provisioning
  token in a root-only file). Anything that looks like private key material is
  refused, and the device key is never produced here: upfleet-provision.service
  makes it on the device at first boot.
- Root metadata is installed byte for byte as given; it is only read to check
  that it is a signed TUF root without private keys.
- Every problem is a ConfigError whose text names the BitBake variable to fix.
"""

import copy
import json
import os
import re
import tarfile

ROOT_FILES = ("director-root.json", "image-repo-root.json")
VERIFICATION_MODES = ("partial", "full")
# PEM private keys, Upfleet's encrypted key files (core/src/key-files.ts), and
# TUF/securesystemslib key objects with a private part.
KEY_FILE_MARKERS = (b"PRIVATE KEY", b"upfleet-encrypted-key")
PRIVATE_MARKERS = KEY_FILE_MARKERS + (b'"private"',)


class ConfigError(Exception):
    pass


ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")


def _url(value, variable, what, schemes, required):
    if not value:
        if required:
            raise ConfigError("%s is not set: set it (e.g. in local.conf) to %s" % (variable, what))
        return None
    if not value.startswith(tuple(s + "://" for s in schemes)):
        raise ConfigError("%s=%r: expected a %s URL" % (variable, value, " or ".join(schemes)))
    return value


def _required(values, variable, what):
    value = values.get(variable) or ""
    if not value:
        raise ConfigError("%s is not set: set it (e.g. in local.conf) to %s" % (variable, what))
    return value


def _positive(values, variable, default, minimum=1):
    value = values.get(variable) or default
    if not value.isdigit() or int(value) < minimum:
        raise ConfigError("%s=%r: expected a whole number of at least %d" % (variable, value, minimum))
    return int(value)


def parse_secondaries(text):
    """UPFLEET_SECONDARIES: space-separated entries, each
    serial,hardwareId,port[,baud[,verification]] (baud 115200 and
    verification "partial" when left out)."""
    out = []
    for item in (text or "").split():
        fields = item.split(",")
        if len(fields) < 3 or len(fields) > 5 or not all(fields[:3]):
            raise ConfigError("UPFLEET_SECONDARIES entry %r: expected "
                              "serial,hardwareId,port[,baud[,verification]]" % item)
        serial, hardware_id, port = fields[:3]
        baud = fields[3] if len(fields) > 3 and fields[3] else "115200"
        mode = fields[4] if len(fields) > 4 and fields[4] else "partial"
        if not baud.isdigit() or int(baud) < 300:
            raise ConfigError("UPFLEET_SECONDARIES entry %r: baud %r is not a number of at least 300" % (item, baud))
        if mode not in VERIFICATION_MODES:
            raise ConfigError("UPFLEET_SECONDARIES entry %r: verification must be one of %s"
                              % (item, ", ".join(VERIFICATION_MODES)))
        if not port.startswith("/dev/"):
            raise ConfigError("UPFLEET_SECONDARIES entry %r: port %r is not a /dev path" % (item, port))
        out.append({"serial": serial, "hardwareId": hardware_id, "port": port,
                    "baud": int(baud), "verification": mode})
    return out


INSTALLERS = ("rauc", "handler")


def _installer(values):
    """ecus.primary.installer: RAUC, or an install handler (docs/install-handlers.md)."""
    kind = values.get("UPFLEET_PRIMARY_INSTALLER") or "handler"
    if kind not in INSTALLERS:
        raise ConfigError("UPFLEET_PRIMARY_INSTALLER=%r: expected one of %s" % (kind, ", ".join(INSTALLERS)))
    if kind == "rauc":
        installer = {"type": "rauc",
                     "rebootCommand": _required(values, "UPFLEET_RAUC_REBOOT_COMMAND",
                                                "the command that restarts the machine into the new slot")}
        if values.get("UPFLEET_RAUC_HEALTH_CHECK"):
            installer["healthCheck"] = values["UPFLEET_RAUC_HEALTH_CHECK"]
        if values.get("UPFLEET_PRIMARY_INSTALL_TIMEOUT"):
            installer["timeoutSeconds"] = _positive(values, "UPFLEET_PRIMARY_INSTALL_TIMEOUT", "1800")
        return installer
    installer = {"type": "handler", "command": _required(
        values, "UPFLEET_PRIMARY_INSTALL_COMMAND",
        "the command that installs an image on the primary (run with UPFLEET_PHASE="
        "install|activate|health|commit|rollback and the image path), or set "
        "UPFLEET_PRIMARY_INSTALLER = \"rauc\"")}
    if values.get("UPFLEET_PRIMARY_INSTALL_TIMEOUT"):
        installer["timeoutSeconds"] = _positive(values, "UPFLEET_PRIMARY_INSTALL_TIMEOUT", "600")
    return installer


def serial_dropin(cfg):
    """upfleet-agent.service.d/50-serial-ports.conf: the unit's DevicePolicy=closed
    allows the configured secondaries' serial ports, and nothing else."""
    lines = ["# Written by upfleet-agent-config from UPFLEET_SECONDARIES.", "[Service]"]
    for port in sorted({s["port"] for s in cfg["ecus"]["secondaries"]}):
        lines.append("DeviceAllow=%s rw" % port)
    return "\n".join(lines) + "\n"


def data_mount(device, fstype):
    """var-lib-upfleet.mount: the data partition that both A/B slots share, at the
    agent's state directory (the units' RequiresMountsFor= pulls it in)."""
    if not device.startswith("/dev/"):
        raise ConfigError("UPFLEET_DATA_DEVICE=%r: expected a /dev path, e.g. /dev/disk/by-partlabel/data" % device)
    if not re.match(r"^[a-z0-9]+$", fstype or ""):
        raise ConfigError("UPFLEET_DATA_FSTYPE=%r: expected a file system type such as ext4" % fstype)
    return ("# Written by upfleet-agent-config from UPFLEET_DATA_DEVICE.\n"
            "[Unit]\n"
            "Description=Upfleet data partition (agent state, RAUC status), shared by both slots\n"
            "Before=local-fs.target\n\n"
            "[Mount]\n"
            "What=%s\n"
            "Where=/var/lib/upfleet\n"
            "Type=%s\n"
            "Options=defaults,noatime\n\n"
            "[Install]\n"
            "WantedBy=local-fs.target\n" % (device, fstype))


def build(template, values):
    """The agent configuration: `template` (the layer's agent.json) with the
    UPFLEET_* values applied. `values` maps variable name -> string. The
    checks mirror the agent's own (agent/src/config.ts), so that a bad value
    fails the build rather than the device."""
    cfg = copy.deepcopy(template)
    cfg["directorUrl"] = _url(values.get("UPFLEET_DIRECTOR_URL"), "UPFLEET_DIRECTOR_URL",
                              "the director's device API URL", ("https", "http"), True)
    cfg["imageRepoUrl"] = _url(values.get("UPFLEET_IMAGE_REPO_URL"), "UPFLEET_IMAGE_REPO_URL",
                               "the image repository URL", ("https", "http"), True)
    mqtt = _url(values.get("UPFLEET_MQTT_URL"), "UPFLEET_MQTT_URL", "",
                ("mqtts", "mqtt", "wss", "ws", "tcp"), False)
    if mqtt:
        cfg["mqttUrl"] = mqtt
    else:
        cfg.pop("mqttUrl", None)
    if values.get("UPFLEET_MQTT_TOPIC_PREFIX"):
        cfg["mqttTopicPrefix"] = values["UPFLEET_MQTT_TOPIC_PREFIX"]

    device_id = values.get("UPFLEET_DEVICE_ID") or ""
    if device_id and not ID_PATTERN.match(device_id):
        raise ConfigError("UPFLEET_DEVICE_ID=%r may hold only letters, digits, '.', '_' and '-'" % device_id)
    cfg["deviceId"] = device_id

    passphrase_file = values.get("UPFLEET_KEY_PASSPHRASE_FILE")
    if passphrase_file:
        cfg["keyPassphraseFile"] = passphrase_file
    else:
        cfg.pop("keyPassphraseFile", None)
    cfg["pollIntervalSeconds"] = _positive(values, "UPFLEET_POLL_INTERVAL", "300")

    primary = cfg["ecus"]["primary"]
    # Empty: each device derives its own at first boot (UPFLEET_PRIMARY_SERIAL in device.env).
    primary["serial"] = values.get("UPFLEET_PRIMARY_SERIAL") or ""
    primary["hardwareId"] = _required(values, "UPFLEET_PRIMARY_HARDWARE_ID", "the primary ECU's hardware ID")
    primary.pop("installCommand", None)
    primary.pop("installTimeoutSeconds", None)
    primary["installer"] = _installer(values)

    cfg["ecus"]["secondaries"] = parse_secondaries(values.get("UPFLEET_SECONDARIES"))
    serials = [s for s in [primary["serial"]] if s] + [s["serial"] for s in cfg["ecus"]["secondaries"]]
    if len(set(serials)) != len(serials):
        raise ConfigError("UPFLEET_PRIMARY_SERIAL and UPFLEET_SECONDARIES: ECU serials must be unique")
    return cfg


def token_env(path):
    """/etc/upfleet/provisioning.env from UPFLEET_PROVISIONING_TOKEN_FILE."""
    try:
        with open(path) as f:
            token = f.read().strip()
    except OSError as e:
        raise ConfigError("UPFLEET_PROVISIONING_TOKEN_FILE=%s cannot be read: %s" % (path, e.strerror))
    if not token or any(c.isspace() for c in token):
        raise ConfigError("UPFLEET_PROVISIONING_TOKEN_FILE=%s must hold one token on one line" % path)
    return "UPFLEET_PROVISIONING_TOKEN=%s\n" % token


def dumps(cfg):
    return json.dumps(cfg, indent=2) + "\n"


def check_root(data, origin):
    """Refuse anything but signed TUF root metadata without private keys."""
    if any(m in data for m in PRIVATE_MARKERS):
        raise ConfigError("%s holds private key material; only public root metadata may be built into an image"
                          % origin)
    try:
        doc = json.loads(data)
        signed, signatures = doc["signed"], doc["signatures"]
        kind = signed["_type"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError("%s is not TUF metadata (JSON with signed and signatures)" % origin)
    if kind != "root":
        raise ConfigError("%s is %r metadata, not root" % (origin, kind))
    if not isinstance(signatures, list) or not signatures:
        raise ConfigError("%s has no signatures" % origin)


def _bundle_members(path):
    """Yield (name, bytes) for every regular file of a directory or tarball."""
    if os.path.isdir(path):
        for top, _, files in os.walk(path):
            for name in files:
                full = os.path.join(top, name)
                with open(full, "rb") as f:
                    yield os.path.relpath(full, path), f.read()
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    yield member.name, tar.extractfile(member).read()
    else:
        raise ConfigError("UPFLEET_PROVISIONING_BUNDLE=%s is neither a directory nor a tar archive" % path)


def roots_from_bundle(path):
    """{file name: bytes} for director-root.json and image-repo-root.json in
    a provisioning bundle. Bundles carrying private keys are refused."""
    if not os.path.exists(path):
        raise ConfigError("UPFLEET_PROVISIONING_BUNDLE=%s does not exist" % path)
    found = {}
    for name, data in _bundle_members(path):
        if any(m in data for m in KEY_FILE_MARKERS) or name.endswith(".key"):
            raise ConfigError("UPFLEET_PROVISIONING_BUNDLE=%s contains private key material (%s); "
                              "device keys are generated on the device at first boot" % (path, name))
        base = os.path.basename(name)
        if base in ROOT_FILES:
            if base in found:
                raise ConfigError("UPFLEET_PROVISIONING_BUNDLE=%s has more than one %s" % (path, base))
            found[base] = data
    return found


def collect_roots(director_root, image_repo_root, bundle):
    """{file name: bytes} for the two root files, from the per-file variables
    (which win) or the bundle. Missing roots raise ConfigError."""
    roots = roots_from_bundle(bundle) if bundle else {}
    for variable, path, name in (("UPFLEET_DIRECTOR_ROOT", director_root, ROOT_FILES[0]),
                                 ("UPFLEET_IMAGE_REPO_ROOT", image_repo_root, ROOT_FILES[1])):
        if path:
            try:
                with open(path, "rb") as f:
                    roots[name] = f.read()
            except OSError as e:
                raise ConfigError("%s=%s cannot be read: %s" % (variable, path, e.strerror))
    missing = [n for n in ROOT_FILES if n not in roots]
    if missing:
        raise ConfigError("no trusted root metadata for %s: set UPFLEET_DIRECTOR_ROOT and "
                          "UPFLEET_IMAGE_REPO_ROOT to root.json files on the build host, or "
                          "UPFLEET_PROVISIONING_BUNDLE to a directory or tarball holding %s"
                          % (", ".join(missing), " and ".join(ROOT_FILES)))
    for name, data in roots.items():
        check_root(data, name)
    return roots
