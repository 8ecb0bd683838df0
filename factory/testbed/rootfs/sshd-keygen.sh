#!/bin/sh
### BEGIN INIT INFO
# Provides:          sshd-keygen
# Required-Start:    $local_fs
# Required-Stop:
# X-Start-Before:    ssh
# Default-Start:     2 3 4 5
# Default-Stop:
# Short-Description: Create missing SSH host keys (like EL7's sshd-keygen)
### END INIT INFO
# Sealing deletes the host keys so every instance gets its own; recreate them before sshd starts.
case "$1" in
start)
	# ed25519 and ECDSA only: an RSA-3072 key takes ~30 s to generate under TCG, the whole SSH budget.
	# sshd_config.d/testbed.conf names exactly these two as HostKeys.
	for t in ed25519 ecdsa; do
		[ -f "/etc/ssh/ssh_host_${t}_key" ] || ssh-keygen -q -t "$t" -N "" -f "/etc/ssh/ssh_host_${t}_key"
	done
	;;
stop | restart | status) exit 0 ;;
*) echo "Usage: $0 {start|stop}" >&2; exit 3 ;;
esac
