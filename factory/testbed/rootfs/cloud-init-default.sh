# /etc/default/cloud-init of the testbed: sourced by each of Debian's four cloud-init init scripts
# (cloud-init-local, cloud-init, cloud-config, cloud-final) before they start their stage.
#
# Under systemd, cloud-init-generator runs ds-identify and leaves cloud-init out of the boot when no
# datasource is found. sysvinit has no generator, so without this every boot would try each datasource
# of the image's datasource_list in turn (Ec2's metadata timeouts alone are minutes under TCG). This gate
# does what the generator does, once per boot: disabled by /etc/cloud/cloud-init.disabled or the kernel's
# cloud-init=disabled, else ds-identify decides (and writes /run/cloud-init/cloud.cfg, the datasource list
# cloud-init then reads); a disabled verdict makes each script exit 0 at once.
_gate=/run/cloud-init/sysv-gate
if [ ! -e "$_gate" ]; then
	mkdir -p /run/cloud-init
	if [ -e /etc/cloud/cloud-init.disabled ]; then
		echo "disabled by /etc/cloud/cloud-init.disabled" >"$_gate"
	elif grep -qw 'cloud-init=disabled' /proc/cmdline; then
		echo "disabled by the kernel command line" >"$_gate"
	elif /usr/lib/cloud-init/ds-identify; then
		echo "enabled" >"$_gate"
	else
		echo "disabled by ds-identify (no datasource found)" >"$_gate"
	fi
fi
read -r _verdict <"$_gate" || _verdict=disabled
if [ "$_verdict" != enabled ]; then
	[ "$NAME" = cloud-init ] && [ "${DAEMON_ARGS:-}" = "init --local" ] && echo "cloud-init: $_verdict"
	exit 0
fi
unset _gate _verdict
