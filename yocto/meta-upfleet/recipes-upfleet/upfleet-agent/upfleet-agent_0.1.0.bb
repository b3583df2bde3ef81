SUMMARY = "Upfleet update agent: the on-device Uptane primary"
DESCRIPTION = "Fully verifies the Upfleet director and image repository, installs \
updates on the primary and streams them to secondary ECUs over serial links. \
Built from source for the target: TypeScript compiled to JavaScript, native \
addons (better-sqlite3, serialport) cross-compiled against the target Node.js."
HOMEPAGE = "https://github.com/upfleet/upfleet"
SECTION = "console/network"

# Upfleet is Apache-2.0; the npm packages built into the agent add the licenses
# listed at the top of upfleet-agent-npm.inc (keep the two in step when the
# dependencies change).
UPFLEET_LICENSE ?= "${@upfleet_license_expression(['Apache-2.0', 'MIT', 'ISC', 'BSD-3-Clause', '0BSD'])}"
UPFLEET_LIC_FILES_CHKSUM ?= "file://LICENSE;md5=89aea4e17d99a7cacdbeed46a0096b10"
LICENSE = "${UPFLEET_LICENSE}"

# OE-core after wrynose parses SPDX expressions ("AND") and warns on "&";
# the releases up to wrynose know only "&".
def upfleet_license_expression(names):
    import importlib.util
    joiner = " AND " if importlib.util.find_spec("oe.spdx_license") else " & "
    return joiner.join(names)
LIC_FILES_CHKSUM = "${UPFLEET_LIC_FILES_CHKSUM}"

# Where the source comes from. Override in local.conf or a bbappend, e.g.
#   UPFLEET_SRC_URI = "git:///home/me/upfleet;protocol=file;branch=main"
# UPFLEET_SRCREV defaults to the revision upfleet-agent-npm.inc was generated
# for; move both together with scripts/upfleet-npm-deps.
UPFLEET_SRC_URI ?= "git://github.com/upfleet/upfleet.git;protocol=https;branch=main"
UPFLEET_NPM_REGISTRY ?= "https://registry.npmjs.org"

# The agent's command-line entry module, relative to the repository root.
UPFLEET_AGENT_MAIN ?= "agent/src/cli.ts"

SRC_URI = "${UPFLEET_SRC_URI};name=upfleet;destsuffix=upfleet \
           file://upfleet-agent.sh \
           file://upfleet-firstboot.sh \
           file://upfleet-agent.service \
           file://upfleet-provision.service \
           file://upfleet-reboot.path \
           file://upfleet-reboot.service \
           file://70-upfleet-serial.rules \
          "
require upfleet-agent-npm.inc

SRCREV_upfleet = "${UPFLEET_SRCREV}"
PV .= "+git"

# scarthgap (5.0) has no UNPACKDIR and unpacks into WORKDIR.
UPFLEET_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
S = "${UPFLEET_UNPACKDIR}/upfleet"
B = "${WORKDIR}/build"

inherit systemd useradd python3native features_check

REQUIRED_DISTRO_FEATURES = "systemd"

# nodejs-native runs tsc, node-gyp and the addons' build actions; the target
# nodejs provides the headers and config.gypi the addons are compiled against.
DEPENDS += "nodejs-native nodejs"
RDEPENDS:${PN} = "nodejs upfleet-agent-config"

UPFLEET_APPDIR = "${libdir}/upfleet-agent"
UPFLEET_NODEDIR ?= "${STAGING_DIR_HOST}${prefix}"
UPFLEET_NODE_GYP ?= "${STAGING_LIBDIR_NATIVE}/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"

# Same mapping as nodejs.bb in meta-oe.
def upfleet_node_arch(d):
    import re
    a = d.getVar("TARGET_ARCH")
    if re.match(r"i.86$", a): return "ia32"
    if re.match(r"x86_64$", a): return "x64"
    if re.match(r"aarch64$", a): return "arm64"
    if re.match(r"(powerpc64|powerpc64le|ppc64le)$", a): return "ppc64"
    if re.match(r"powerpc$", a): return "ppc"
    return a

def upfleet_js_path(path):
    for ts, js in ((".mts", ".mjs"), (".cts", ".cjs"), (".ts", ".js")):
        if path.endswith(ts):
            return path[:-len(ts)] + js
    return path

UPFLEET_NODE_ARCH ?= "${@upfleet_node_arch(d)}"
UPFLEET_AGENT_MAIN_JS = "${@upfleet_js_path(d.getVar('UPFLEET_AGENT_MAIN'))}"

USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --user-group --home-dir ${localstatedir}/lib/upfleet \
                       --no-create-home --shell ${base_sbindir}/nologin upfleet"

SYSTEMD_SERVICE:${PN} = "upfleet-agent.service upfleet-provision.service upfleet-reboot.path"
SYSTEMD_AUTO_ENABLE = "enable"

def upfleet_fetched_npm(d):
    """location -> sha512 of the run-time npm tarballs in SRC_URI."""
    fetched = {}
    for url in (d.getVar("SRC_URI") or "").split():
        params = bb.fetch2.decodeurl(url)[5]
        subdir = params.get("subdir", "")
        if subdir.startswith("npm-runtime/"):
            fetched[subdir[len("npm-runtime/"):]] = d.getVarFlag("SRC_URI", params["name"] + ".sha512sum")
    return fetched

# Refuse to build when the fetched package-lock.json needs other npm packages
# than the ones upfleet-agent-npm.inc fetched (UPFLEET_SRCREV moved on alone).
# Then write the tsconfig that compiles the agent's workspaces.
python do_configure() {
    import json
    import os
    from upfleet import npmlock

    lock_path = os.path.join(d.getVar("S"), "package-lock.json")
    try:
        lock = npmlock.load(lock_path)
        problems = npmlock.compare(lock, d.getVar("UPFLEET_NPM_WORKSPACE"),
                                   (d.getVar("UPFLEET_NPM_EXCLUDE") or "").split(),
                                   upfleet_fetched_npm(d))
    except (OSError, npmlock.LockError) as e:
        bb.fatal("upfleet-agent: cannot read %s: %s" % (lock_path, e))
    if problems:
        bb.fatal("upfleet-agent: package-lock.json at %s does not match upfleet-agent-npm.inc:\n  %s\n"
                 "Regenerate it: meta-upfleet/scripts/upfleet-npm-deps --repo <upfleet checkout> --rev %s"
                 % (d.getVar("UPFLEET_SRCREV"), "\n  ".join(problems), d.getVar("UPFLEET_SRCREV")))

    workspaces = d.getVar("UPFLEET_NPM_WORKSPACES").split()
    tsconfig = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "verbatimModuleSyntax": True,
            "allowImportingTsExtensions": True,
            "rewriteRelativeImportExtensions": True,
            "resolveJsonModule": True,
            "noEmit": False,
            "noCheck": True,
            "declaration": False,
            "sourceMap": False,
            "skipLibCheck": True,
            "types": [],
        },
        "include": ["app/%s/**/*.%s" % (ws, ext) for ws in workspaces for ext in ("ts", "mts", "cts")],
        "exclude": ["**/node_modules", "**/test", "**/*.test.ts", "**/*.d.ts"],
    }
    bb.utils.mkdirhier(d.getVar("B"))
    with open(os.path.join(d.getVar("B"), "tsconfig.upfleet.json"), "w") as f:
        json.dump(tsconfig, f, indent=2)
}

do_compile() {
    app=${B}/app
    rm -rf $app ${B}/home ${B}/node-gyp
    mkdir -p $app ${B}/home
    export HOME=${B}/home

    # 1. The workspaces the agent needs, then the npm packages in the exact
    #    node_modules layout of package-lock.json, then the workspace links.
    for ws in ${UPFLEET_NPM_WORKSPACES}; do
        mkdir -p $app/$ws
        tar -C ${S}/$ws --exclude=./node_modules --exclude=./test -cf - . | tar -C $app/$ws -xf -
    done
    cp -R --no-preserve=ownership ${UPFLEET_UNPACKDIR}/npm-runtime/. $app/
    for link in ${UPFLEET_NPM_LINKS}; do
        location=${link%%=*}
        up=$(dirname $location | sed 's,[^/][^/]*,..,g')
        mkdir -p $app/$(dirname $location)
        ln -sfn $up/${link#*=} $app/$location
    done

    # 2. TypeScript -> JavaScript, with the typescript pinned in the lock file.
    node ${UPFLEET_UNPACKDIR}/npm-tools/node_modules/typescript/bin/tsc -p ${B}/tsconfig.upfleet.json

    # 3. Native addons, cross-compiled for the target against its nodejs.
    if [ ! -f ${UPFLEET_NODE_GYP} ]; then
        bbfatal "node-gyp not found at ${UPFLEET_NODE_GYP}: set UPFLEET_NODE_GYP"
    fi
    jobs=$(echo "${PARALLEL_MAKE}" | sed -n 's/.*-j *\([0-9][0-9]*\).*/\1/p')
    for pkg in ${UPFLEET_NPM_INSTALL_SCRIPTS}; do
        dir=$app/$pkg
        if [ ! -f $dir/binding.gyp ]; then
            bbwarn "$pkg has an install script that is not a node-gyp build; it was not run"
            continue
        fi
        rm -rf $dir/build $dir/prebuilds
        (cd $dir && node ${UPFLEET_NODE_GYP} rebuild --release \
            --arch=${UPFLEET_NODE_ARCH} --nodedir=${UPFLEET_NODEDIR} \
            --devdir=${B}/node-gyp --python=${PYTHON} --jobs=${jobs:-1})
        # Keep the addon, drop objects, sources and foreign prebuilt binaries.
        find $dir/build -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
        find $dir/build/Release -mindepth 1 ! -name '*.node' -exec rm -rf {} +
        rm -rf $dir/deps
        find $dir \( -name '*.c' -o -name '*.cc' -o -name '*.cpp' -o -name '*.h' -o -name '*.hpp' \
            -o -name '*.lzz' -o -name '*.gyp' -o -name '*.gypi' \) -type f -delete
        find $dir -type d -empty -delete
    done

    # 4. Nothing in the tree is executed directly (${bindir}/upfleet-agent
    #    runs node on the entry module): no exec bits, so no interpreter
    #    dependencies (#!/usr/bin/env node, #!/bin/bash) either.
    find $app -type f ! -name '*.node' -perm /111 -exec chmod a-x {} +
}

# After compiling: the workspaces' package.json point at .js, the .ts sources
# go, and the entry module must exist.
python upfleet_finish_app() {
    import json
    import os
    from upfleet import npmlock

    app = os.path.join(d.getVar("B"), "app")
    for ws in d.getVar("UPFLEET_NPM_WORKSPACES").split():
        root = os.path.join(app, ws)
        manifest_path = os.path.join(root, "package.json")
        with open(manifest_path) as f:
            manifest = json.load(f)
        with open(manifest_path, "w") as f:
            json.dump(npmlock.rewrite_exports(manifest), f, indent=2)
        for top, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if x != "node_modules"]
            for name in files:
                if name.endswith((".ts", ".mts", ".cts")):
                    os.remove(os.path.join(top, name))
    main = os.path.join(app, d.getVar("UPFLEET_AGENT_MAIN_JS"))
    if not os.path.isfile(main):
        bb.fatal("upfleet-agent: the entry module %s was not built: set UPFLEET_AGENT_MAIN to the "
                 "agent's CLI module (relative to the repository root)" % d.getVar("UPFLEET_AGENT_MAIN"))
}
do_compile[postfuncs] += "upfleet_finish_app"

do_install() {
    install -d ${D}${UPFLEET_APPDIR}
    cp -R --no-preserve=ownership ${B}/app/. ${D}${UPFLEET_APPDIR}/

    install -d ${D}${bindir}
    sed -e 's,@NODE@,${bindir}/node,g' \
        -e 's,@MAIN@,${UPFLEET_APPDIR}/${UPFLEET_AGENT_MAIN_JS},g' \
        ${UPFLEET_UNPACKDIR}/upfleet-agent.sh > ${D}${bindir}/upfleet-agent
    chmod 0755 ${D}${bindir}/upfleet-agent

    install -D -m 0755 ${UPFLEET_UNPACKDIR}/upfleet-firstboot.sh ${D}${libexecdir}/upfleet/firstboot

    install -d ${D}${systemd_system_unitdir}
    for unit in upfleet-agent.service upfleet-provision.service upfleet-reboot.path upfleet-reboot.service; do
        sed -e 's,@BINDIR@,${bindir},g' -e 's,@LIBEXECDIR@,${libexecdir},g' \
            ${UPFLEET_UNPACKDIR}/$unit > ${D}${systemd_system_unitdir}/$unit
        chmod 0644 ${D}${systemd_system_unitdir}/$unit
    done

    install -D -m 0644 ${UPFLEET_UNPACKDIR}/70-upfleet-serial.rules \
        ${D}${nonarch_base_libdir}/udev/rules.d/70-upfleet-serial.rules

    # State lives here; the device key (keys/primary.key) is made at first boot.
    install -d -m 0750 -o upfleet -g upfleet ${D}${localstatedir}/lib/upfleet
    install -d -m 0700 -o upfleet -g upfleet ${D}${localstatedir}/lib/upfleet/keys
}

FILES:${PN} += " \
    ${UPFLEET_APPDIR} \
    ${libexecdir}/upfleet \
    ${nonarch_base_libdir}/udev/rules.d/70-upfleet-serial.rules \
    ${localstatedir}/lib/upfleet \
"
