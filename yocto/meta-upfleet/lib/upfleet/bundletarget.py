#
# SPDX-License-Identifier: MIT
#
"""The Upfleet target a RAUC bundle is published as (upfleet-rauc-bundle.bbclass).

Invariants:
- The description is computed from the bundle file the build made: its
  length and sha256/sha512, the names the agent matches (hardware ID) and the
  custom fields the repositories carry ({ hardwareIds, releaseCounter, version }).
- The version must be SemVer 2.0.0 and the release counter a whole number, as
  the image repository requires; each problem is a ConfigError naming the
  BitBake variable to fix.
"""

import hashlib
import json
import re

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
                    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")


class ConfigError(Exception):
    pass


def describe(bundle_path, name, hardware_id, version, release_counter):
    """The target entry for `bundle_path`, and the upfleet-repo command that publishes it."""
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise ConfigError("UPFLEET_TARGET_NAME=%r is not a usable target name" % name)
    if not hardware_id:
        raise ConfigError("UPFLEET_TARGET_HARDWARE_ID is empty: set it to the gateway's hardware ID "
                          "(UPFLEET_PRIMARY_HARDWARE_ID of the agent configuration)")
    if not SEMVER.match(version or ""):
        raise ConfigError("UPFLEET_TARGET_VERSION=%r is not a SemVer 2.0.0 version (e.g. 1.4.0); "
                          "it defaults to RAUC_BUNDLE_VERSION" % version)
    if not (release_counter or "").isdigit():
        raise ConfigError("UPFLEET_RELEASE_COUNTER=%r: set it to a whole number that grows with every "
                          "release (the agent refuses images with a lower one)" % release_counter)
    sha256, sha512, length = hashlib.sha256(), hashlib.sha512(), 0
    with open(bundle_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha256.update(chunk)
            sha512.update(chunk)
            length += len(chunk)
    counter = int(release_counter)
    return {
        "name": name,
        "length": length,
        "hashes": {"sha256": sha256.hexdigest(), "sha512": sha512.hexdigest()},
        "custom": {"hardwareIds": [hardware_id], "releaseCounter": counter, "version": version},
        "publish": ["upfleet-repo", "add-target", bundle_path, "--name", name, "--hardware-id", hardware_id,
                    "--version", version, "--release-counter", str(counter)],
    }


def dumps(target):
    return json.dumps(target, indent=2) + "\n"
