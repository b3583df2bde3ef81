#!/bin/bash
# The VM test's disk image and RAUC bundles (docs/vm-test.md), built in plain files:
# no loop device, no mount. Input: the Debian base tarball (build-base.sh) and the
# single-file agent (npm run build:agent). Output in OUT:
#
#   disk.img     MBR disk: 1 boot (ext2: GRUB's grub.cfg, grubenv, modules),
#                2 rootfs.0 (slot A, version 1.0.0), 3 rootfs.1 (slot B, empty),
#                4 data (/var/lib/upfleet: left empty here, written per test run);
#                GRUB's boot.img in the MBR and its core.img in the gap before partition 1
#   rootfs-2.0.0.raucb, rootfs-3.0.0-unhealthy.raucb, rootfs-4.0.0.raucb
#                RAUC bundles (verity format) of the same system with another
#                /etc/upfleet-release; 3.0.0's health check fails on purpose
#   layout.json  partition offsets and sizes (bytes), image sizes
#
#   build-disk.sh BASE.tar AGENT_DIR REPO_ROOT OUT
set -euo pipefail
base=$1; agent=$2; repo=$3; out=$4
guest=$repo/scripts/vm/guest
yfiles=$repo/yocto/meta-upfleet/recipes-upfleet/upfleet-agent/files
UPFLEET_UID=990

mkdir -p "$out"
work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir "$root"
tar -C "$root" --numeric-owner -xpf "$base"

# --- the Upfleet gateway on top of the Debian base ---------------------------------
chroot "$root" useradd --system --uid $UPFLEET_UID --user-group --home-dir /var/lib/upfleet \
  --no-create-home --shell /usr/sbin/nologin upfleet
install -d "$root/opt/upfleet" "$root/usr/libexec/upfleet" "$root/etc/upfleet" \
  "$root/boot/grub-env" "$root/var/lib/upfleet" "$root/etc/rauc" "$root/etc/systemd/network"
cp "$agent"/* "$root/opt/upfleet/"
ln -sf /opt/upfleet/upfleet-agent "$root/usr/bin/upfleet-agent"
for unit in upfleet-agent.service upfleet-provision.service upfleet-reboot.path upfleet-reboot.service; do
  sed -e 's|@BINDIR@|/usr/bin|g' -e 's|@LIBEXECDIR@|/usr/libexec|g' "$yfiles/$unit" > "$root/etc/systemd/system/$unit"
done
install -m 0755 "$yfiles/upfleet-firstboot.sh" "$root/usr/libexec/upfleet/firstboot"
install -m 0644 "$yfiles/70-upfleet-serial.rules" "$root/etc/udev/rules.d/70-upfleet-serial.rules"
install -m 0644 "$guest/50-serial-ports.conf" -D "$root/etc/systemd/system/upfleet-agent.service.d/50-serial-ports.conf"
install -m 0755 "$guest/health-check" "$guest/vm-shell" "$root/usr/libexec/upfleet/"
install -m 0644 "$guest/upfleet-vm-shell.service" "$root/etc/systemd/system/"
install -m 0644 "$guest/agent.json" "$root/etc/upfleet/agent.json"
install -m 0644 "$guest/system.conf" "$root/etc/rauc/system.conf"
install -m 0644 "$guest/rauc-dbus.conf" "$root/etc/dbus-1/system.d/de.pengutronix.rauc.conf"
install -m 0644 "$repo/yocto/meta-upfleet/dynamic-layers/rauc/recipes-upfleet/upfleet-rauc/files/upfleet-rauc-dbus.conf" \
  "$root/etc/dbus-1/system.d/upfleet-rauc.conf"
install -m 0644 "$guest/rauc.service" "$root/etc/systemd/system/rauc.service"
install -D -m 0644 "$guest/de.pengutronix.rauc.service" "$root/usr/share/dbus-1/system-services/de.pengutronix.rauc.service"
install -m 0644 "$guest/fstab" "$root/etc/fstab"
install -m 0644 "$guest/10-vm.network" "$root/etc/systemd/network/10-vm.network"
echo upfleet-vm > "$root/etc/hostname"
: > "$root/etc/machine-id"
systemctl --root="$root" enable upfleet-agent.service upfleet-provision.service upfleet-reboot.path \
  upfleet-vm-shell.service systemd-networkd.service >/dev/null 2>&1
# A quicker boot under emulation: no logins (the test talks over ttyS2), no periodic
# maintenance, no KVM modules (the emulated CPU offers SVM, nothing uses it).
systemctl --root="$root" mask getty@tty1.service serial-getty@ttyS0.service apt-daily.timer \
  apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
  systemd-tmpfiles-clean.timer >/dev/null 2>&1
printf 'blacklist kvm\nblacklist kvm_amd\nblacklist kvm_intel\nblacklist pcspkr\n' > "$root/etc/modprobe.d/upfleet-vm.conf"
# GRUB loads the kernel from the slot itself: stable names for the versioned files.
ln -sf "$(cd "$root/boot" && ls vmlinuz-* | head -1)" "$root/boot/vmlinuz"
ln -sf "$(cd "$root/boot" && ls initrd.img-* | head -1)" "$root/boot/initrd.img"

# RAUC's signing key (test only: made here, the keyring goes into every slot).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj /CN=upfleet-vm-test -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cp "$work/cert.pem" "$root/etc/rauc/keyring.pem"

# --- slot images ----------------------------------------------------------------
used_mb=$(du -sm "$root" | cut -f1)
image_mb=$(( used_mb * 125 / 100 + 48 ))
slot_mb=$(( image_mb + 64 ))
boot_mb=16
data_mb=1536

rootfs_image() { # version health(good|bad) file
  echo "$1" > "$root/etc/upfleet-release"
  if [ "$2" = bad ]; then
    printf '#!/bin/sh\necho "health check of test image %s fails on purpose" >&2\nexit 1\n' "$1" > "$root/usr/libexec/upfleet/health-check"
  else
    install -m 0755 "$guest/health-check" "$root/usr/libexec/upfleet/health-check"
  fi
  rm -f "$3"
  truncate -s "${image_mb}M" "$3"
  mkfs.ext4 -q -F -L rootfs -d "$root" "$3"
}

bundle() { # version health name
  local dir=$work/bundle
  rm -rf "$dir"; mkdir "$dir"
  rootfs_image "$1" "$2" "$dir/rootfs.ext4"
  printf '[update]\ncompatible=upfleet-vm\nversion=%s\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.ext4\n' "$1" > "$dir/manifest.raucm"
  rm -f "$out/$3"
  rauc bundle --cert="$work/cert.pem" --key="$work/key.pem" --mksquashfs-args="-comp zstd -Xcompression-level 3" "$dir" "$out/$3" 2>&1 >/dev/null \
    | { grep -v 'No keyring given' || true; } >&2
}

# --- the disk ---------------------------------------------------------------------
mib=$((1024 * 1024))
p1=$mib; p2=$(( p1 + boot_mb * mib )); p3=$(( p2 + slot_mb * mib )); p4=$(( p3 + slot_mb * mib ))
total=$(( p4 + data_mb * mib ))
disk=$work/disk.img
truncate -s "$total" "$disk"
sfdisk -q "$disk" <<SFDISK
label: dos
start=$(( p1 / 512 )), size=$(( boot_mb * mib / 512 )), type=83, bootable
start=$(( p2 / 512 )), size=$(( slot_mb * mib / 512 )), type=83
start=$(( p3 / 512 )), size=$(( slot_mb * mib / 512 )), type=83
start=$(( p4 / 512 )), size=$(( data_mb * mib / 512 )), type=83
SFDISK

# GRUB for BIOS (SeaBIOS boots faster than UEFI under emulation): boot.img in the MBR
# (its default kernel sector is 1) and core.img from sector 1 on (diskboot's default
# block list starts at sector 2); core.img finds grub.cfg on partition 1.
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/grub' \
  biosdisk part_msdos ext2 normal linux boot loadenv test echo serial terminal
[ "$(stat -c %s "$work/core.img")" -lt $(( p1 - 512 )) ] || { echo "core.img does not fit before partition 1" >&2; exit 1; }
dd if=/usr/lib/grub/i386-pc/boot.img of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$disk" bs=512 seek=1 conv=notrunc status=none

bootfs=$work/bootfs
install -d "$bootfs/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$bootfs/grub/i386-pc/"
install -m 0644 "$guest/grub.cfg" "$bootfs/grub/grub.cfg"
grub-editenv "$bootfs/grub/grubenv" create
grub-editenv "$bootfs/grub/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
truncate -s "${boot_mb}M" "$work/boot.ext2"
mkfs.ext2 -q -F -L boot -d "$bootfs" "$work/boot.ext2"
dd if="$work/boot.ext2" of="$disk" bs=1M seek=$(( p1 / mib )) conv=notrunc,sparse status=none

rootfs_image 1.0.0 good "$work/rootfs.ext4"
dd if="$work/rootfs.ext4" of="$disk" bs=1M seek=$(( p2 / mib )) conv=notrunc,sparse status=none
rm -f "$work/rootfs.ext4"

bundle 2.0.0 good rootfs-2.0.0.raucb
bundle 3.0.0 bad rootfs-3.0.0-unhealthy.raucb
bundle 4.0.0 good rootfs-4.0.0.raucb

mv "$disk" "$out/disk.img"
cat > "$out/layout.json" <<JSON
{ "partitions": { "boot": [$p1, $(( boot_mb * mib ))], "rootfs.0": [$p2, $(( slot_mb * mib ))], "rootfs.1": [$p3, $(( slot_mb * mib ))], "data": [$p4, $(( data_mb * mib ))] },
  "rootfsImageBytes": $(( image_mb * mib )), "rootfsUsedMiB": $used_mb, "upfleetUid": $UPFLEET_UID }
JSON
