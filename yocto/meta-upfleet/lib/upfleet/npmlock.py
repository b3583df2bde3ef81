#
# SPDX-License-Identifier: MIT
#
"""Read an npm package-lock.json (lockfileVersion 2 or 3) and work out what
one workspace needs at run time.

Invariants:
- The lock file is the single source of truth: every package keeps the exact
  location (node_modules/... path) npm gave it, so the tree unpacked from the
  tarballs is the tree `npm ci` would have made.
- Checksums come from the lock file's `integrity` (sha512), never from the
  registry: BitBake verifies every tarball against data held in the layer.
- Only what the workspace can load at run time is listed: dependencies,
  optionalDependencies and required peerDependencies, never devDependencies.

Used by the recipe (to check that the layer's generated dependency list still
matches the lock file of the fetched source) and by scripts/upfleet-npm-deps
(to generate that list).
"""

import base64
import json

NPMJS_REGISTRY = "https://registry.npmjs.org"


class LockError(Exception):
    pass


class Package:
    """One entry of the lock file that must be fetched as a tarball."""

    def __init__(self, location, entry):
        self.location = location
        self.name = entry.get("name") or location.rsplit("node_modules/", 1)[-1]
        self.version = entry["version"]
        self.resolved = entry.get("resolved", "")
        self.integrity = entry.get("integrity", "")
        self.install_script = bool(entry.get("hasInstallScript"))
        self.license = entry.get("license") or "UNKNOWN"

    @property
    def sha512(self):
        """Hex sha512 of the tarball, from the lock file's integrity string."""
        for item in self.integrity.split():
            algo, _, digest = item.partition("-")
            if algo == "sha512":
                return base64.b64decode(digest).hex()
        raise LockError("%s@%s (%s): the lock file has no sha512 integrity"
                        % (self.name, self.version, self.location))

    @property
    def bitbake_name(self):
        """A SRC_URI name= value, unique per name@version."""
        return "npm-%s-%s" % (self.name.replace("@", "").replace("/", "__"), self.version)


def parse(text, origin):
    lock = json.loads(text)
    if int(lock.get("lockfileVersion", 0)) < 2 or "packages" not in lock:
        raise LockError("%s: lockfileVersion 2 or later is required" % origin)
    return lock


def load(path):
    with open(path) as f:
        return parse(f.read(), path)


def _parent(location):
    """The location whose node_modules is searched after this one's:
    node_modules/a/node_modules/b -> node_modules/a; node_modules/a -> "";
    agent/node_modules/x -> agent; agent -> "" (the root)."""
    if "/node_modules/" in location:
        return location[:location.rindex("/node_modules/")]
    return ""


def _runs_on_linux(entry):
    os_list = entry.get("os") or []
    allowed = [o for o in os_list if not o.startswith("!")]
    if allowed:
        return "linux" in allowed
    return "!linux" not in os_list


def resolve(packages, name, location):
    """Node's lookup: <loc>/node_modules/<name>, then up the tree."""
    loc = location
    while True:
        candidate = (loc + "/" if loc else "") + "node_modules/" + name
        if candidate in packages:
            return candidate
        if not loc:
            return None
        loc = _parent(loc)


def _runtime_deps(entry):
    deps = [(n, False) for n in entry.get("dependencies", {})]
    deps += [(n, True) for n in entry.get("optionalDependencies", {})]
    peer_meta = entry.get("peerDependenciesMeta", {})
    deps += [(n, peer_meta.get(n, {}).get("optional", False))
             for n in entry.get("peerDependencies", {})]
    return deps


def closure(lock, workspace, exclude=()):
    """Everything `workspace` (a folder such as "agent") needs at run time.

    Returns (workspaces, links, packages): the workspace folders reached
    (the start one first), {link location: workspace folder} for the
    node_modules entries npm links to workspaces, and the Package list
    sorted by location. Names in `exclude` are left out with their own
    dependencies (for install-time-only helpers such as prebuild-install).
    """
    packages = lock["packages"]
    if workspace not in packages:
        raise LockError("workspace %r is not in the lock file" % workspace)
    workspaces, links, found = [workspace], {}, {}
    todo = [workspace]
    while todo:
        location = todo.pop()
        for name, optional in _runtime_deps(packages[location]):
            if name in exclude:
                continue
            target = resolve(packages, name, location)
            if target is None:
                if optional:
                    continue
                raise LockError("%s needs %s, which is not in the lock file" % (location or "<root>", name))
            entry = packages[target]
            if entry.get("link"):
                folder = entry["resolved"]
                links[target] = folder
                if folder not in workspaces:
                    workspaces.append(folder)
                    todo.append(folder)
                continue
            if target in found:
                continue
            if not _runs_on_linux(entry):
                if optional:
                    continue
                raise LockError("%s is required but not built for Linux" % target)
            if entry.get("cpu"):
                raise LockError("%s is a CPU-specific package (%s); the layer does not select "
                                "per-architecture npm packages yet" % (target, ",".join(entry["cpu"])))
            found[target] = Package(target, entry)
            todo.append(target)
    return workspaces, links, sorted(found.values(), key=lambda p: p.location)


def compare(lock, workspace, exclude, fetched):
    """Differences between what the lock file needs and what was fetched.

    `fetched` maps location -> hex sha512 (from the recipe's SRC_URI).
    Returns a list of human-readable lines; empty when they agree.
    """
    _, _, packages = closure(lock, workspace, exclude)
    needed = {p.location: p for p in packages}
    problems = []
    for location, pkg in sorted(needed.items()):
        if location not in fetched:
            problems.append("missing   %s (%s@%s)" % (location, pkg.name, pkg.version))
        elif fetched[location] != pkg.sha512:
            problems.append("changed   %s (lock file has %s@%s)" % (location, pkg.name, pkg.version))
    for location in sorted(set(fetched) - set(needed)):
        problems.append("unneeded  %s" % location)
    return problems


def root_dev_package(lock, name):
    """A build tool the lock pins at the top level, e.g. typescript."""
    location = "node_modules/" + name
    entry = lock["packages"].get(location)
    if entry is None or entry.get("link"):
        raise LockError("%s is not pinned at the top level of the lock file" % name)
    return Package(location, entry)


def tarball_url(pkg, registry_var="${UPFLEET_NPM_REGISTRY}"):
    """The download URL, with the npmjs registry swapped for a variable.

    Lock files written with omit-lockfile-registry-resolved carry no
    `resolved` field: such packages come from the registry, at the URL npm
    itself would use (<registry>/<name>/-/<basename>-<version>.tgz).
    """
    url = pkg.resolved
    if not url:
        return "%s/%s/-/%s-%s.tgz" % (registry_var, pkg.name, pkg.name.split("/")[-1], pkg.version)
    if not url.startswith(("https://", "http://")):
        raise LockError("%s: only registry tarballs are supported, not %r" % (pkg.location, url))
    if url.startswith(NPMJS_REGISTRY + "/"):
        url = registry_var + url[len(NPMJS_REGISTRY):]
    return url


def rewrite_exports(manifest):
    """Point a workspace package.json at the compiled .js files.

    "./src/index.ts" becomes "./src/index.js"; a subpath pattern "./*" that
    maps to "./src/*" gains a "./*.ts" twin mapping to "./src/*.js", so that
    `import "@scope/pkg/x.ts"` still resolves once the .ts sources are gone.
    """
    def js(value):
        if isinstance(value, str):
            for ts, out in ((".mts", ".mjs"), (".cts", ".cjs"), (".ts", ".js")):
                if value.endswith(ts) and not value.endswith(".d" + ts):
                    return value[:-len(ts)] + out
            return value
        if isinstance(value, dict):
            return {k: js(v) for k, v in value.items()}
        if isinstance(value, list):
            return [js(v) for v in value]
        return value

    for field in ("main", "module"):
        if field in manifest:
            manifest[field] = js(manifest[field])
    for field in ("exports", "imports"):
        table = manifest.get(field)
        if isinstance(table, dict) and any(k.startswith((".", "#")) for k in table):
            out = {}
            for key, value in table.items():
                if key.endswith("*") and isinstance(value, str) and value.endswith("*"):
                    out[key + ".ts"] = value + ".js"
                out[key] = js(value)
            manifest[field] = out
        elif table is not None:
            manifest[field] = js(table)
    manifest.pop("devDependencies", None)
    manifest.pop("scripts", None)
    return manifest
