#!/bin/sh
# mmdebstrap customize hook for the testbed's base root filesystem: customize.sh ROOT DATA_DIR PKGLIST
# Runs on the build host with ROOT = the finished chroot; DATA_DIR = factory/testbed; PKGLIST = a host
# file that receives the installed package names.
set -eu
root=$1
data=$2
pkglist=$3
install -m 0755 "$data/rootfs/network.sh" "$root/etc/init.d/network"
install -m 0755 "$data/rootfs/sshd-keygen.sh" "$root/etc/init.d/sshd-keygen"
install -d "$root/etc/testbed" "$root/etc/sysconfig/network-scripts"
install -m 0755 "$data/udhcpc.sh" "$root/etc/testbed/udhcpc.sh"
chroot "$root" update-rc.d network defaults
chroot "$root" update-rc.d sshd-keygen defaults
# Every install must get its own host keys: sshd-keygen makes them on first boot.
rm -f "$root"/etc/ssh/ssh_host_*
# Root logs in by key only (the Debian default, stated so a changed default cannot surprise verify).
{
	echo "PermitRootLogin prohibit-password"
	# The keys sshd-keygen makes at first boot (no RSA: too slow to generate under TCG).
	echo "HostKey /etc/ssh/ssh_host_ed25519_key"
	echo "HostKey /etc/ssh/ssh_host_ecdsa_key"
} >"$root/etc/ssh/sshd_config.d/testbed.conf"
# Skip work a CI guest never needs at boot: no console getty respawn storms on absent ttys.
sed -i -e '/^[2-6]:23:respawn/d' -e 's/^1:2345:respawn:.*/T0:23:respawn:\/sbin\/getty -L ttyS0 115200 vt100/' \
	"$root/etc/inittab"
echo testbed >"$root/etc/hostname"
# cloud-init under sysvinit: Debian's own init scripts, gated by ds-identify (see cloud-init-default.sh).
# Only in the root filesystem that has it: the base one does not (the cloud layer, factory.testbed.layer).
if [ -d "$root/etc/cloud" ]; then
	install -m 0644 "$data/rootfs/cloud-init-default.sh" "$root/etc/default/cloud-init"
	install -m 0644 "$data/rootfs/cloud-testbed.cfg" "$root/etc/cloud/cloud.cfg.d/99_testbed.cfg"
fi
# The system locale, stated: cloud-init's locale module would otherwise run locale-gen for en_US.UTF-8
# (tens of seconds under TCG) on the first boot of every profile.
echo "LANG=C.UTF-8" >"$root/etc/default/locale"
# Boot time under TCG is the budget (SSH < 30 s): a fork costs ~0.1 s early in the boot, and Debian's
# generic rcS scripts fork a lot. Drop what a VM without hardware clock, backlight, configfs or NFS
# never needs. Removing the scripts (not just their links) keeps insserv from bringing the links back
# when the installer runs update-rc.d for `services`.
for s in hwclock.sh brightness mount-configfs bootlogs mountnfs-bootclean.sh mountnfs.sh; do
	if [ -e "$root/etc/init.d/$s" ]; then
		chroot "$root" update-rc.d -f "$s" remove >/dev/null 2>&1
		rm -f "$root/etc/init.d/$s"
	fi
done
# The kernel file system mounts stay, with Debian's options, but done with builtins (~6 s less). Same
# paths: checkroot.sh runs them again by name.
install -D -m 0644 "$data/rootfs/mounts-lib.sh" "$root/lib/testbed/mounts.sh"
install -m 0755 "$data/rootfs/mountkernfs.sh" "$root/etc/init.d/mountkernfs.sh"
install -m 0755 "$data/rootfs/mountdevsubfs.sh" "$root/etc/init.d/mountdevsubfs.sh"
# The whole boot graph must still resolve (insserv fails on a missing required service).
chroot "$root" insserv
# What checkroot.sh's mtab_migrate creates at first boot otherwise.
ln -sf /proc/mounts "$root/etc/mtab"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# The package list the installer prints as "Installing <pkg> (N/M)".
chroot "$root" dpkg-query -W -f '${Package}\n' >"$pkglist"
