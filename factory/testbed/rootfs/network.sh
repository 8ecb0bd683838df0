#!/bin/sh
### BEGIN INIT INFO
# Provides:          network
# Required-Start:    $local_fs
# Required-Stop:     $local_fs
# Default-Start:     S
# Default-Stop:      0 6
# Short-Description: EL7-style network service for the testbed
# Description:       Brings up the interfaces described by
#                    /etc/sysconfig/network-scripts/ifcfg-*, like EL7's network service:
#                    only ONBOOT=yes, DHCP via busybox udhcpc, or BOOTPROTO=none with IPADDR.
### END INIT INFO
# Installed as /etc/init.d/network by the testbed build. Only ONBOOT=yes interfaces come up, so a
# kickstart with --onboot=no yields an unreachable image, exactly RHEL 7's pitfall.

# The base has no iproute2: busybox's ip applet does the same here.
command -v ip >/dev/null 2>&1 || ip() { busybox ip "$@"; }

start() {
	ip link set lo up
	for f in /etc/sysconfig/network-scripts/ifcfg-*; do
		[ -f "$f" ] || continue
		(
			DEVICE="" ONBOOT="" BOOTPROTO="" IPADDR="" NETMASK="" PREFIX="" GATEWAY="" HWADDR=""
			. "$f"
			dev=${DEVICE:-${f##*/ifcfg-}}
			[ "$dev" = lo ] && exit 0
			case "$ONBOOT" in yes | YES | true | 1) ;; *) exit 0 ;; esac
			# As EL 7's ifup-eth: an ifcfg pinned to a MAC (HWADDR=) brings up only that NIC, the golden
			# image's classic fault on every other machine.
			if [ -n "$HWADDR" ]; then
				found=$(cat "/sys/class/net/$dev/address" 2>/dev/null)
				if [ "$(echo "$found" | tr 'A-F' 'a-f')" != "$(echo "$HWADDR" | tr 'A-F' 'a-f')" ]; then
					echo "Device $dev has different MAC address than expected, ignoring."
					exit 1
				fi
			fi
			ip link set "$dev" up || exit 1
			case "$BOOTPROTO" in
			dhcp | bootp)
				# Wait for the first lease (a few seconds at most), then keep renewing in the background.
				busybox udhcpc -i "$dev" -t 10 -T 1 -b -p "/run/udhcpc.$dev.pid" \
					-s /etc/testbed/udhcpc.sh >/dev/null 2>&1
				;;
			*)
				[ -n "$IPADDR" ] && ip -4 addr add "$IPADDR/${PREFIX:-${NETMASK:-24}}" dev "$dev"
				[ -n "$GATEWAY" ] && ip -4 route replace default via "$GATEWAY" dev "$dev"
				;;
			esac
		)
	done
}

stop() {
	for p in /run/udhcpc.*.pid; do
		[ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null
	done
	return 0
}

case "$1" in
start) start ;;
stop) stop ;;
restart) stop; start ;;
status) ip -4 addr show | grep -q 'inet .* scope global' ;;
*) echo "Usage: $0 {start|stop|restart|status}" >&2; exit 3 ;;
esac
