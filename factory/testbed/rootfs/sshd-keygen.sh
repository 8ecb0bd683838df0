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
start) ssh-keygen -A >/dev/null ;;
stop | restart | status) exit 0 ;;
*) echo "Usage: $0 {start|stop}" >&2; exit 3 ;;
esac
