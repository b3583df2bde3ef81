#!/bin/bash
# The VM test's Debian base (docs/vm-test.md): a minimal bookworm root file system
# made with mmdebstrap, as a tarball. Everything Upfleet-specific is added later by
# build-disk.sh, so this slow step (it downloads ~100 MB of packages) reruns only when
# this file changes.
#
#   build-base.sh MIRROR OUT.tar
set -euo pipefail
mirror=$1
out=$2

# systemd + udev + D-Bus + RAUC (with grub-editenv for its GRUB backend) + the small
# "cloud" kernel (virtio drivers, no hardware zoo) and its initramfs.
packages=(
  systemd systemd-sysv udev dbus
  rauc grub-common squashfs-tools e2fsprogs
  linux-image-cloud-amd64 initramfs-tools zstd kmod
)

tmp=$(mktemp -d "${out}.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# No documentation, manuals or translations: smaller slots, faster installs.
mmdebstrap --variant=minbase --mode=root --format=tar \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/grub/themes/*' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"; printf "MODULES=list\nCOMPRESS=zstd\n" > "$1/etc/initramfs-tools/conf.d/upfleet-vm.conf"; printf "virtio_pci\nvirtio_blk\next4\n" > "$1/etc/initramfs-tools/modules"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  --aptopt='Acquire::Languages "none"' \
  bookworm "$tmp/rootfs.tar" "$mirror"

mv "$tmp/rootfs.tar" "$out"
