#!/bin/sh
# udhcpc event script, shared by the installer's initramfs and the installed system (busybox ships none).
# udhcpc passes the lease in the environment: $interface $ip $subnet $mask $router $dns.
# busybox ip: the installed base has no iproute2 (minbase), the initramfs has only busybox.
ip() { busybox ip "$@"; }

case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip -4 addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do
		ip -4 route replace default via "$r" dev "$interface"
		break
	done
	if [ -n "$dns" ]; then
		: >/etc/resolv.conf
		for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
	fi
	;;
esac
exit 0
