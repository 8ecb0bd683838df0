#!/bin/sh
### BEGIN INIT INFO
# Provides:          mountkernfs
# Required-Start:
# Required-Stop:
# Should-Start:      glibc
# Default-Start:     S
# Default-Stop:
# Short-Description: Mount kernel virtual file systems.
# Description:       /proc, /sys, /run and /run/lock, as Debian's mountkernfs.sh mounts them.
### END INIT INFO
# The testbed's /etc/init.d/mountkernfs.sh, in place of initscripts' (a conffile): the same mounts and
# options, done with shell builtins. Under QEMU TCG a fork costs ~0.1 s early in the boot, and Debian's
# script forks grep/sed/mountpoint/uname ~60 times (~3 s); checkroot.sh calls it again with `reload`.
PATH=/sbin:/bin:/usr/sbin:/usr/bin

. /lib/testbed/mounts.sh

start() {
	read_mounts
	# Sizes and modes as in /lib/init/tmpfs.sh's defaults (/run 10% of RAM, /run/lock 5 MiB).
	if mnt tmpfs /run nosuid,noexec,size=10%,mode=755; then
		mkdir -p -m 755 /run/sendsigs.omit.d
		# bootclean skips a directory marked as tmpfs: nothing to clean.
		: >/run/.tmpfs
	fi
	[ -d /run/lock ] || mkdir -m 755 /run/lock
	mnt tmpfs /run/lock nodev,noexec,nosuid,size=5242880,mode=1777 && : >/run/lock/.tmpfs
	mnt proc /proc nodev,noexec,nosuid
	read_mounts
	mnt sysfs /sys nodev,noexec,nosuid && read_mounts
	[ -d /sys/kernel/security ] && mnt securityfs /sys/kernel/security
	[ -d /sys/fs/pstore ] && mnt pstore /sys/fs/pstore
	[ -d /sys/firmware/efi/efivars ] && mnt efivarfs /sys/firmware/efi/efivars
	return 0
}

case "$1" in
start | restart | reload | force-reload | "") start ;;
stop | status) ;;
*) echo "Usage: mountkernfs [start|stop]" >&2; exit 3 ;;
esac
