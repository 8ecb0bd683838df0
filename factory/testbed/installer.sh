#!/bin/sh
# /init of the testbed initramfs (busybox ash). NOT anaconda: a stand-in installer so CI can run the
# factory's whole pipeline without vendor media. It speaks anaconda's protocol where the factory listens:
# stage lines on the serial console, timestamped lines on the virtio-serial port
# org.fedoraproject.anaconda.log.0, anaconda's failure texts, and power-off on success.
#
# Two modes, chosen by the kernel command line:
#   inst.ks=http://...   install onto /dev/vda from the kickstart (testbed.fail=crash|hang|panic|post
#                        injects a failure); the medium is the CD-ROM, or inst.repo=http://... (PXE)
#   root=LABEL=root      the installed system's initramfs: load drivers, mount root, switch_root
# See docs/testbed.md for the kickstart subset.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
TAB=$(printf '\t')
REPO=/run/install/repo
SYSROOT=/mnt/sysimage
KS=/run/install/ks.cfg
PLAN=/run/install/ks.plan
SCRIPTS=/run/install/scripts
LOGFILE=/tmp/anaconda.log
LOGPORT=""
STAGE=startup

# ---------------------------------------------------------------- output
BOOT_EPOCH=0
stamp() {
	# busybox date has no %N: the clock is boot time + uptime (centiseconds), so it never runs backwards.
	read -r up _ </proc/uptime
	echo "$(date -d "@$((BOOT_EPOCH + ${up%.*}))" +%H:%M:%S),${up#*.}0"
}
# logline LEVEL MESSAGE: one anaconda.log line to the log port and /tmp/anaconda.log.
logline() {
	l="$(stamp) $1 anaconda: $2"
	echo "$l" >>"$LOGFILE"
	[ -n "$LOGPORT" ] && echo "$l" >"$LOGPORT" 2>/dev/null
	return 0
}
# say MESSAGE: a stage line on the console (= ttyS0 with console=ttyS0) and an INFO log line.
say() {
	echo "$*" >/dev/console
	logline INFO "$*"
}
warn() {
	echo "$*" >/dev/console
	logline WARN "$*"
}
find_logport() {
	for p in /sys/class/virtio-ports/*; do
		[ -r "$p/name" ] || continue
		if [ "$(cat "$p/name")" = org.fedoraproject.anaconda.log.0 ]; then
			LOGPORT=/dev/${p##*/}
			# The port node appears through devtmpfs; wait briefly rather than lose the first lines.
			for _ in 1 2 3 4 5 6 7 8 9 10; do [ -c "$LOGPORT" ] && break; sleep 0.1; done
			[ -c "$LOGPORT" ] || LOGPORT=""
			[ -n "$LOGPORT" ] && cat "$LOGFILE" >"$LOGPORT" 2>/dev/null
		fi
	done
}

# ---------------------------------------------------------------- failure paths
# Like anaconda after a fatal error: the message stays on screen and the machine does NOT power off,
# so the factory classifies the failure from the console instead of mistaking it for success.
stop_here() {
	sync
	while :; do sleep 3600; done
}
# crash WHAT: an unexpected failure, reported as a Python-style traceback (the factory's marker).
crash() {
	logline CRIT "$1"
	{
		echo "Traceback (most recent call last):"
		echo "  File \"/usr/sbin/testbed-installer\", line 1, in <module>"
		echo "    install()"
		echo "  File \"/usr/sbin/testbed-installer\", line 1, in $STAGE"
		echo "    $STAGE()"
		echo "TestbedInstallerError: $1"
	} | tee -a "$LOGFILE" >/dev/console
	[ -n "$LOGPORT" ] && echo "$(stamp) CRIT anaconda: Traceback (most recent call last): TestbedInstallerError: $1" >"$LOGPORT"
	echo "An unknown error has occured, look at the /tmp/anaconda-tb* file(s) for more details" >/dev/console
	stop_here
}
# ks_error LINE MESSAGE: anaconda's text for a kickstart it cannot apply.
ks_error() {
	logline ERR "kickstart error on line $1: $2"
	{
		echo
		echo "The following problem occurred on line $1 of the kickstart file:"
		echo
		echo "$2"
		echo
	} >/dev/console
	stop_here
}
# fail_as CLASS: the console text of a real EL 7.2 failure (anaconda 21.48, dracut 033, kernel 3.10 wording),
# for the monitor's classes that the paths above do not produce (testbed.fail=CLASS; docs/testbed.md).
kmsg() { echo "<1>$*" >/dev/kmsg; }
hub_screen() {
	bar='================================================================================'
	printf '%s\n' "$bar" "$bar" Installation ""
	printf '%s\n' \
		" 1) [x] Language settings                 2) [x] Timezone settings" \
		"        (English (United States))                (America/New_York timezone)" \
		" 3) [x] Installation source               4) [!] Software selection" \
		"        (Local media)                            (Error checking software select" \
		"                                                 ion)" \
		" 5) [x] Installation Destination          6) [x] Kdump" \
		"        (Automatic partitioning selecte          (Kdump is enabled)" \
		"        d)" \
		" 7) [x] Network configuration             8) [x] Root password" \
		"        (Wired (eth0) connected)                 (Password is set.)" \
		" 9) [ ] User creation" \
		"        (No user will be created)" \
		"  Please make your choice from above ['q' to quit | 'b' to begin installation |"
	printf "  'r' to refresh]: "
}
fail_as() {
	logline INFO "testbed.fail=$1: replaying a real failure's console text"
	case "$1" in
	cmdline)
		printf '\n%s\n%s\n\n%s\n\n%s\n' \
			"The installation was stopped due to incomplete spokes detected while running in non-interactive cmdline mode. Since there cannot be any questions in cmdline mode, edit your kickstart file and retry installation." \
			"The exact error message is: " "CmdlineError: Missing package: nosuchpkg." \
			"The installer will now terminate." >/dev/console
		logline ERR "CmdlineError: Missing package: nosuchpkg" ;;
	hub)
		# Redrawn every few seconds, so output keeps flowing and no idle timer can end it.
		while :; do hub_screen >/dev/console; sleep 3; done ;;
	retry)
		n=1
		while :; do
			echo "Installing error populating transaction, retrying ($n/10)" >/dev/console
			n=$((n % 10 + 1)); sleep 2
		done ;;
	frames)
		printf '%s\n' \
			'  File "/usr/lib64/python2.7/site-packages/pyanaconda/threads.py", line 227, in run' \
			'    threading.Thread.run(self, *args, **kwargs)' \
			'  File "/usr/lib64/python2.7/site-packages/pyanaconda/bootloader.py", line 1554, in install' \
			'    raise BootLoaderError("boot loader install failed")' \
			'BootLoaderError: boot loader install failed' >/dev/console ;;
	dracut)
		kmsg "dracut: FATAL: Failed to find a root filesystem in /tmp/curl_fetch_url1/install.img."
		kmsg "dracut: Refusing to continue"
		sync; halt -f ;;
	oops)
		kmsg "general protection fault: 0000 [#1] SMP "
		kmsg "CPU: 0 PID: $$ Comm: anaconda Not tainted 3.10.0-327.el7.x86_64 #1"
		kmsg "RIP: 0010:[<ffffffff811c8f35>]  [<ffffffff811c8f35>] kmem_cache_alloc+0x75/0x1e0" ;;
	*) crash "unknown testbed.fail=$1" ;;
	esac
	stop_here
}
# run CMD...: run a step; a failure is a crash with the command's output in the log.
run() {
	out=$("$@" 2>&1)
	rc=$?
	[ -n "$out" ] && echo "$out" >>"$LOGFILE"
	[ $rc -eq 0 ] || crash "command failed with status $rc: $* ${out:+-- $(echo "$out" | tail -n 3 | tr '\n' ' ')}"
}

# ---------------------------------------------------------------- early boot
early_mounts() {
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev 2>/dev/null
	mkdir -p /run /tmp /mnt
	mount -t tmpfs tmpfs /run
}
# The Debian cloud kernel has these as modules; load them in the dependency order computed at build time.
load_modules() {
	while read -r ko; do
		insmod "/lib/modules/$(uname -r)/$ko" 2>>"$LOGFILE" || echo "insmod $ko failed" >>"$LOGFILE"
	done </etc/testbed/modules
}
cmdline_arg() {
	for a in $(cat /proc/cmdline); do
		case "$a" in "$1"=*) echo "${a#*=}"; return 0 ;; esac
	done
	return 1
}

# ---------------------------------------------------------------- installed-system boot
boot_installed() {
	root=$(cmdline_arg root)
	# root=LABEL=root: the same image boots from /dev/vda1 (virtio) or /dev/nvme0n1p1 (the aws profile).
	case "$root" in
	LABEL=* | UUID=*)
		spec=$root
		for _ in $(seq 50); do root=$(findfs "$spec" 2>/dev/null) && [ -b "$root" ] && break; sleep 0.1; done
		;;
	esac
	for _ in $(seq 50); do [ -b "$root" ] && break; sleep 0.1; done
	mkdir -p /newroot
	if ! mount -t ext4 -o ro "$root" /newroot 2>>"$LOGFILE"; then
		# What EL 7's dracut prints when the root device never shows up (no driver for its disk, a wrong
		# root=), so the factory's boot watch sees the same emergency shell it sees on EL. Through the
		# kernel log, as dracut's warnings go: /dev/console is only the last console= (tty0 here).
		case "${spec:-}" in
		LABEL=*) missing=/dev/disk/by-label/${spec#LABEL=} ;;
		UUID=*) missing=/dev/disk/by-uuid/${spec#UUID=} ;;
		*) missing=$root ;;
		esac
		for line in "dracut-initqueue[$$]: Warning: Could not boot." \
			"dracut-initqueue[$$]: Warning: $missing does not exist" \
			"dracut: Generating \"/run/initramfs/rdsosreport.txt\"" \
			"dracut: Entering emergency mode. Exit the shell to continue."; do
			echo "<4>$line" >/dev/kmsg
		done
		PS1='dracut:/# ' exec sh </dev/console >/dev/console 2>&1
	fi
	# udev's /dev/block/MAJ:MIN links (the testbed has no udev; devtmpfs makes none): cloud-init's
	# growpart finds the disk holding the root partition through them.
	mkdir -p /dev/block
	for d in /sys/class/block/*; do
		[ -r "$d/dev" ] && ln -sf "../${d##*/}" "/dev/block/$(cat "$d/dev")"
	done
	mount --move /dev /newroot/dev
	umount /run /sys /proc
	exec switch_root /newroot /sbin/init
}

# ---------------------------------------------------------------- media, network, kickstart
find_media() {
	STAGE=find_media
	mkdir -p "$REPO"
	for _ in $(seq 100); do
		for dev in /dev/sr* /dev/sd* /dev/vd*; do
			[ -b "$dev" ] || continue
			if mount -t iso9660 -o ro "$dev" "$REPO" 2>/dev/null; then
				[ -f "$REPO/images/install.img" ] && { logline INFO "installation media found on $dev"; return 0; }
				umount "$REPO"
			fi
		done
		sleep 0.2
	done
	crash "no installation media with images/install.img found (is the ISO attached as a CD-ROM?)"
}
network_up() {
	STAGE=network_up
	ip link set lo up
	for _ in $(seq 50); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
	ip link set eth0 up 2>>"$LOGFILE"
	say "Bringing up eth0 (DHCP)"
	udhcpc -i eth0 -n -q -t 10 -T 1 -s /etc/testbed/udhcpc.sh >>"$LOGFILE" 2>&1 || warn "DHCP on eth0 failed"
}
# http_get URL FILE: HTTP/1.0 GET through busybox nc. Not busybox wget: the static build's wget
# crashes in glibc's NSS lookups when no NSS modules exist (as in this initramfs).
http_get() {
	rest=${1#http://}
	hostport=${rest%%/*}
	path=/${rest#*/}
	[ "$rest" = "$hostport" ] && path=/
	host=${hostport%:*}
	port=${hostport##*:}
	[ "$port" = "$hostport" ] && port=80
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: testbed-installer\r\n\r\n' "$path" "$hostport" |
		nc -w 10 "$host" "$port" >/tmp/http.response 2>>"$LOGFILE" || return 1
	head -n 1 /tmp/http.response | grep -q '^HTTP/1\.[01] 200' || return 1
	# The body starts after the first empty (\r\n) line.
	awk 'body { print; next } /^\r?$/ { body = 1 }' /tmp/http.response >"$2"
}
# http_fetch URL FILE: like http_get, binary-safe (tarballs, .debs, kernels): the body is what follows
# the header's empty line, cut by byte count instead of read as text lines.
http_fetch() {
	rest=${1#http://}
	hostport=${rest%%/*}
	path=/${rest#*/}
	[ "$rest" = "$hostport" ] && path=/
	host=${hostport%:*}
	port=${hostport##*:}
	[ "$port" = "$hostport" ] && port=80
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: testbed-installer\r\n\r\n' "$path" "$hostport" |
		nc -w 30 "$host" "$port" >/tmp/http.raw 2>>"$LOGFILE" || return 1
	head -n 1 /tmp/http.raw | grep -q '^HTTP/1\.[01] 200' || { rm -f /tmp/http.raw; return 1; }
	header=$(awk '{ n += length($0) + 1 } /^\r?$/ { print n; exit }' /tmp/http.raw)
	tail -c +$((header + 1)) /tmp/http.raw >"$2"
	rm -f /tmp/http.raw
}
# fetch_repo URL: inst.repo=http://... (as anaconda's): the files the install reads from the medium,
# fetched into $REPO; Packages/ is read from the server's folder listing (one link a line).
fetch_repo() {
	STAGE=fetch_repo
	url=${1%/}
	say "Fetching the installation source from $url"
	mkdir -p "$REPO/images" "$REPO/isolinux" "$REPO/Packages"
	for f in images/install.img images/install.pkgs images/install-cloud.img images/install-cloud.pkgs \
		images/install-cloud.remove isolinux/vmlinuz isolinux/initrd.img; do
		http_fetch "$url/$f" "$REPO/$f" || crash "cannot fetch $f from the installation source inst.repo=$url"
	done
	http_fetch "$url/Packages/" /tmp/packages.list || crash "cannot list Packages/ of inst.repo=$url"
	for deb in $(sed -n 's/.*href="\([^"/]*\.deb\)".*/\1/p' /tmp/packages.list); do
		http_fetch "$url/Packages/$deb" "$REPO/Packages/$deb" || crash "cannot fetch Packages/$deb from $url"
	done
	logline INFO "installation source: $url"
}
# Like dracut's initqueue: keep trying for a long time (the server may come up late), with periodic
# messages; the "Could not boot" warning comes only after 180 s, as in real dracut.
fetch_kickstart() {
	STAGE=fetch_kickstart
	url=$1
	mkdir -p "${KS%/*}" # /run/install: find_media makes it, but a network install has no medium
	say "Fetching kickstart from $url"
	start=$(cut -d. -f1 /proc/uptime)
	warned=0
	first=yes
	while :; do
		if http_get "$url" "$KS" 2>>"$LOGFILE"; then
			logline INFO "kickstart fetched from $url ($(wc -l <"$KS") lines)"
			return 0
		fi
		now=$(cut -d. -f1 /proc/uptime)
		if [ "$first" = yes ]; then
			# dracut's fetch-kickstart-net.sh: curl's error, then its warning, once (then anaconda would start
			# without a kickstart; the testbed keeps trying).
			first=no
			status=$(head -n 1 /tmp/http.response 2>/dev/null | tr -d '\r' | cut -d' ' -f2-)
			if [ -n "$status" ]; then
				echo "dracut-initqueue[$$]: curl: (22) The requested URL returned error: $status" >/dev/console
			else
				echo "dracut-initqueue[$$]: curl: (7) Failed connect to $(echo "${url#http://}" | cut -d/ -f1); Connection refused" >/dev/console
			fi
			echo "dracut-initqueue[$$]: Warning: failed to fetch kickstart from $url" >/dev/console
		fi
		if [ $((now - start)) -ge 180 ] && [ $warned -eq 0 ]; then
			warned=1
			echo "dracut-initqueue[$$]: Warning: Could not boot." >/dev/console
			echo "dracut-initqueue[$$]: Warning: Could not fetch kickstart from $url" >/dev/console
			logline ERR "could not fetch kickstart from $url"
		elif [ $warned -eq 0 ]; then
			echo "dracut-initqueue[$$]: waiting for kickstart from $url ($((now - start)) s)" >/dev/console
		fi
		sleep 5
	done
}

# ---------------------------------------------------------------- kickstart commands
# opts LINE CMD "VALUE-OPTS" "FLAG-OPTS" WORDS...: sets O_<name> for each option (dashes as
# underscores); leftover words go to $POS (tab-separated). An unknown option is a kickstart error,
# as pykickstart reports it.
opts() {
	ln=$1 cmd=$2 vals=" $3 " flags=" $4 "
	shift 4
	for v in $OPTNAMES; do unset "O_$v"; done
	OPTNAMES="" POS=""
	while [ $# -gt 0 ]; do
		a=$1
		shift
		case "$a" in
		--*=*) name=${a%%=*} name=${name#--} val=${a#*=} ;;
		--*)
			name=${a#--}
			case "$vals" in
			*" $name "*)
				[ $# -gt 0 ] || ks_error "$ln" "Option --$name of $cmd requires an argument"
				val=$1
				shift
				;;
			*) val=1 ;;
			esac
			;;
		*) POS="$POS$a$TAB"; continue ;;
		esac
		case "$name" in *[!a-z0-9-]*) ks_error "$ln" "$cmd does not take argument --$name" ;; esac
		case "$vals$flags" in *" $name "*) ;; *) ks_error "$ln" "$cmd does not take argument --$name" ;; esac
		var=$(echo "$name" | tr - _)
		OPTNAMES="$OPTNAMES $var"
		eval "O_$var=\$val"
	done
}
yesno() {
	case "$2" in
	yes | on | true | 1) echo yes ;;
	no | off | false | 0) echo no ;;
	*) ks_error "$1" "invalid boolean value: '$2'" ;;
	esac
}

# Settings gathered from the kickstart (applied after the disk is ready, as anaconda does).
NETWORKS="" ROOTPW="" ROOTLOCK=no USERS="" ENABLE="" DISABLE="" APPEND="" BOOTLOC=mbr TIMEOUT=1
PART_FS=ext4 HAVE_STORAGE=no FINISH=halt PACKAGES="" HOSTNAME="" CLOUD=no
c_network() {
	ln=$1
	shift
	opts "$ln" network "bootproto device onboot hostname ip netmask gateway nameserver ipv6 mtu ethtool essid" \
		"activate noipv4 noipv6 nodefroute nodns" "$@"
	bp=${O_bootproto:-dhcp}
	case "$bp" in dhcp | bootp | static | query | ibft) ;; *) ks_error "$ln" "invalid bootproto: '$bp'" ;; esac
	onboot=yes
	[ -n "$O_onboot" ] && onboot=$(yesno "$ln" "$O_onboot")
	[ -n "$O_hostname" ] && HOSTNAME=$O_hostname
	dev=${O_device:-eth0}
	case "$dev" in link | bootif) dev=eth0 ;; esac
	[ "$bp" = static ] && [ -z "$O_ip" ] && ks_error "$ln" "Option --ip is required for --bootproto=static"
	NETWORKS="$NETWORKS$dev:$bp:$onboot:${O_ip:-}:${O_netmask:-}:${O_gateway:-}$TAB"
}
c_rootpw() {
	ln=$1
	shift
	opts "$ln" rootpw "" "iscrypted plaintext lock allow-ssh" "$@"
	pw=$(echo "$POS" | cut -f1)
	[ -z "$pw" ] && [ -z "$O_lock" ] && ks_error "$ln" "A single argument is expected for the rootpw command"
	if [ -n "$pw" ] && [ -z "$O_iscrypted" ]; then pw=$(mkpasswd -m sha512 "$pw"); fi
	ROOTPW=$pw
	[ -n "$O_lock" ] && ROOTLOCK=yes
	return 0
}
c_user() {
	ln=$1
	shift
	opts "$ln" user "name password groups homedir shell uid gid gecos" "iscrypted plaintext lock" "$@"
	[ -n "$O_name" ] || ks_error "$ln" "The name option is required for the user command"
	pw=${O_password:-}
	if [ -n "$pw" ] && [ -z "$O_iscrypted" ]; then pw=$(mkpasswd -m sha512 "$pw"); fi
	[ -n "$O_lock" ] && pw="!$pw"
	USERS="$USERS$O_name:${O_groups:-}:${O_homedir:-}:${O_shell:-}:${O_uid:-}:${O_gecos:-}:$pw$TAB"
}
c_services() {
	ln=$1
	shift
	opts "$ln" services "enabled disabled" "" "$@"
	[ -n "$O_enabled$O_disabled" ] || ks_error "$ln" "One of --disabled or --enabled must be provided."
	ENABLE="$ENABLE $(echo "${O_enabled:-}" | tr , ' ')"
	DISABLE="$DISABLE $(echo "${O_disabled:-}" | tr , ' ')"
}
c_bootloader() {
	ln=$1
	shift
	opts "$ln" bootloader "append location timeout boot-drive driveorder password md5pass" \
		"iscrypted leavebootorder nombr extlinux disabled" "$@"
	APPEND=${O_append:-}
	case "${O_location:-mbr}" in mbr | partition | none) BOOTLOC=${O_location:-mbr} ;; *)
		ks_error "$ln" "invalid bootloader location: '$O_location'" ;;
	esac
	[ -n "$O_disabled" ] && BOOTLOC=none
	[ -n "$O_timeout" ] && TIMEOUT=$O_timeout
	return 0
}
check_fstype() {
	case "$2" in ext4 | ext3 | ext2) PART_FS=$2 ;; *)
		ks_error "$1" "The \"$2\" file system type is not supported." ;;
	esac
}
c_part() {
	ln=$1
	shift
	opts "$ln" part "fstype size maxsize ondisk ondrive label fsoptions asprimary onpart" \
		"grow recommended noformat" "$@"
	mp=$(echo "$POS" | cut -f1)
	[ -n "$mp" ] || ks_error "$ln" "Mount point required for part"
	case "$mp" in
	/) check_fstype "$ln" "${O_fstype:-ext4}"; HAVE_STORAGE=yes ;;
	swap | /boot | /boot/efi | biosboot) logline WARN "line $ln: part $mp ignored (the testbed puts everything on /)" ;;
	*) ks_error "$ln" "The testbed installer only supports the / mount point, not $mp" ;;
	esac
}
c_autopart() {
	ln=$1
	shift
	opts "$ln" autopart "type fstype passphrase" "encrypted nolvm nohome noboot noswap" "$@"
	[ -n "$O_encrypted" ] && ks_error "$ln" "autopart --encrypted is not supported by the testbed installer"
	check_fstype "$ln" "${O_fstype:-ext4}"
	HAVE_STORAGE=yes
}
read_plan() {
	STAGE=read_kickstart
	sh /etc/testbed/ksparse.sh "$KS" "$SCRIPTS" >"$PLAN" || crash "cannot read the kickstart"
	while IFS="$TAB" read -r kind ln rest; do
		IFS=$TAB
		# shellcheck disable=SC2086 # splitting the tab-separated words is the point
		set -f
		set -- $rest
		set +f
		IFS=' '
		case "$kind" in
		E) ks_error "$ln" "$1" ;;
		K)
			case "$1" in
			@* | -*) logline INFO "line $ln: %packages entry $1 skipped (no groups on the testbed media)" ;;
			*) PACKAGES="$PACKAGES $1" ;;
			esac
			;;
		P | S) ;;
		X)
			case "$1 ${2:-}" in
			# Anaconda's OpenSCAP add-on (compliance.remediate_at_install): there is no oscap on the testbed
			# media; the factory's compliance scan of the sealed image still applies.
			"%addon org_fedora_oscap") say "line $ln: oscap addon: not applied on the testbed" ;;
			*) logline INFO "line $ln: section $1 skipped by the testbed installer" ;;
			esac
			;;
		C)
			cmd=$1
			shift
			case "$cmd" in
			network) c_network "$ln" "$@" ;;
			rootpw) c_rootpw "$ln" "$@" ;;
			user) c_user "$ln" "$@" ;;
			services) c_services "$ln" "$@" ;;
			bootloader) c_bootloader "$ln" "$@" ;;
			part | partition) c_part "$ln" "$@" ;;
			autopart) c_autopart "$ln" "$@" ;;
			shutdown | poweroff) FINISH=poweroff ;;
			reboot) FINISH=reboot ;;
			halt) FINISH=halt ;;
			text | cmdline | skipx | firstboot | eula | install | cdrom | zerombr | clearpart | ignoredisk | \
				lang | keyboard | timezone | selinux | firewall | auth | authconfig | url | repo | logging | graphical)
				logline INFO "line $ln: $cmd accepted, nothing to do on the testbed" ;;
			*) logline WARN "line $ln: unknown kickstart command '$cmd' ignored by the testbed installer" ;;
			esac
			;;
		esac
	done <"$PLAN"
	IFS=' '
	if [ "$HAVE_STORAGE" = no ]; then logline WARN "no part / or autopart: using autopart"; fi
	# Like anaconda's package check before anything touches the disk. A package of the base system is
	# there anyway; one of the cloud layer's brings the whole layer (cloud-init and what it runs on).
	debs=""
	for p in $PACKAGES; do
		if listed "$p" "$REPO/images/install.pkgs"; then
			logline INFO "package $p: part of the base system"
			continue
		fi
		if listed "$p" "$REPO/images/install-cloud.pkgs"; then
			logline INFO "package $p: in the cloud layer (images/install-cloud.img)"
			CLOUD=yes
			continue
		fi
		debs="$debs $p"
		set -- "$REPO"/Packages/"$p"_*.deb
		if [ ! -f "$1" ]; then
			logline ERR "packaging: Installation failed: package $p is not on the installation media"
			{
				echo
				echo "You have specified that the package '$p' should be installed.  This package does not exist."
				echo "packaging: Installation failed: missing package $p"
			} >/dev/console
			stop_here
		fi
	done
	PACKAGES=$debs
}
# listed PACKAGE FILE: FILE (install.pkgs lines: package<TAB>marker) names PACKAGE.
listed() {
	[ -f "$2" ] && cut -f 1 "$2" | grep -qxF "$1"
}

# ---------------------------------------------------------------- the install
make_storage() {
	STAGE=make_storage
	[ -b /dev/vda ] || crash "no disk /dev/vda (the testbed installs onto a virtio disk)"
	say "Creating disklabel on /dev/vda"
	dd if=/dev/zero of=/dev/vda bs=1M count=1 2>/dev/null
	# o: new DOS label; n p 1 2048 <default>: one primary partition from 1 MiB (aligned, not busybox's sector 63); a 1: mark it
	# active (the syslinux MBR boots the active partition); w: write.
	printf 'o\nn\np\n1\n2048\n\na\n1\nw\n' | fdisk /dev/vda >>"$LOGFILE" 2>&1
	for _ in $(seq 30); do [ -b /dev/vda1 ] && break; sleep 0.1; done
	[ -b /dev/vda1 ] || crash "partition /dev/vda1 did not appear"
	say "Creating $PART_FS on /dev/vda1"
	# extlinux 6.04 cannot read ext4 with 64bit/metadata_csum_seed... keep the features it knows.
	# The full path: busybox prefers its own applets, and its mke2fs makes ext2 only.
	run /sbin/mke2fs -q -F -t "$PART_FS" -O ^64bit,^metadata_csum -L root /dev/vda1
	mkdir -p "$SYSROOT"
	run mount -t "$PART_FS" /dev/vda1 "$SYSROOT"
}
# unpack TARBALL LIST DONE: unpack onto the sysroot, saying "Installing <pkg> (n/$total)" from n=DONE+1.
# The progress follows the real unpacking, as anaconda's does: the tarball holds each package's files
# together (in LIST order), and LIST names the first path of each ("marker"). When tar -v prints a
# marker, that package (and any file-less one before it) is being installed.
unpack() {
	want=$(($3 + $(wc -l <"$2")))
	# pipefail: a failing tar must fail the install, not vanish behind the progress loop's status.
	set -o pipefail
	# shellcheck disable=SC2016 # awk's own $0, not the shell's
	if ! tar -xzvf "$1" -C "$SYSROOT" 2>>"$LOGFILE" |
		awk -F "$TAB" -v pkgs="$2" '
			BEGIN { while ((getline l <pkgs) > 0) { split(l, f, "\t"); n++; name[n] = f[1]; if (f[2] != "") at[f[2]] = n } }
				($0 in at) { for (; done < at[$0]; done++) print name[done + 1]; fflush() }
			END { for (; done < n; done++) print name[done + 1] }' |
		{
			n=$3
			while read -r p; do
				n=$((n + 1))
				say "Installing $p ($n/$total)"
			done
			[ "$n" -eq "$want" ]
		}; then
		set +o pipefail
		crash "unpacking ${1##*/} failed: $(tail -n 3 "$LOGFILE" | tr '\n' ' ')"
	fi
	set +o pipefail
}
install_base() {
	STAGE=install_packages
	base=$(wc -l <"$REPO/images/install.pkgs")
	cloud=0
	[ "$CLOUD" = yes ] && cloud=$(wc -l <"$REPO/images/install-cloud.pkgs")
	set -- $PACKAGES
	total=$((base + cloud + $#))
	say "Starting package installation process"
	[ "$FAIL" = hang ] && { logline INFO "testbed.fail=hang: going silent"; while :; do sleep 3600; done; }
	unpack "$REPO/images/install.img" "$REPO/images/install.pkgs" 0
	if [ "$CLOUD" = yes ]; then
		unpack "$REPO/images/install-cloud.img" "$REPO/images/install-cloud.pkgs" "$base"
		# What the full system does not have that the base does (built by factory.testbed.layer).
		while read -r gone; do
			[ -n "$gone" ] && rm -rf "${SYSROOT:?}/${gone#./}"
		done <"$REPO/images/install-cloud.remove"
	fi
	n=$((base + cloud))
	for p in $PACKAGES; do
		n=$((n + 1))
		say "Installing $p ($n/$total)"
		set -- "$REPO"/Packages/"$p"_*.deb
		run cp "$1" "$SYSROOT/tmp/"
		run chroot "$SYSROOT" dpkg -i "/tmp/${1##*/}"
		rm -f "$SYSROOT/tmp/${1##*/}"
	done
}
bind_mounts() {
	for d in dev proc sys; do mount --bind "/$d" "$SYSROOT/$d"; done
}
configure() {
	STAGE=configure
	say "Performing post-installation setup tasks"
	# fsck pass 0: a boot-time e2fsck of the root costs seconds under TCG (EL7's xfs root skips it too).
	# By label, as EL's anaconda writes UUID=: the disk is vda under virtio, nvme0n1 on a Nitro instance.
	echo "LABEL=root / $PART_FS defaults 0 0" >"$SYSROOT/etc/fstab"
	[ -n "$HOSTNAME" ] && echo "$HOSTNAME" >"$SYSROOT/etc/hostname"
	mkdir -p "$SYSROOT/etc/sysconfig/network-scripts"
	IFS=$TAB
	for n in $NETWORKS; do
		IFS=:
		set -- $n
		IFS=' '
		# The same keys anaconda writes; the installed system's network service reads only these.
		{
			echo "TYPE=Ethernet"
			if [ "$2" = static ]; then
				echo "BOOTPROTO=none"
				echo "IPADDR=$4"
				[ -n "$5" ] && echo "NETMASK=$5"
				[ -n "$6" ] && echo "GATEWAY=$6"
			else
				echo "BOOTPROTO=dhcp"
			fi
			echo "DEFROUTE=yes"
			echo "NAME=$1"
			echo "DEVICE=$1"
			echo "ONBOOT=$3"
		} >"$SYSROOT/etc/sysconfig/network-scripts/ifcfg-$1"
		IFS=$TAB
	done
	IFS=' '
	if [ -n "$ROOTPW" ]; then run chroot "$SYSROOT" usermod -p "$ROOTPW" root; fi
	if [ "$ROOTLOCK" = yes ]; then
		if [ -n "$ROOTPW" ]; then run chroot "$SYSROOT" usermod -L root; else run chroot "$SYSROOT" usermod -p '!' root; fi
	fi
	IFS=$TAB
	for u in $USERS; do
		IFS=:
		set -- $u
		IFS=' '
		name=$1 groups=$2 home=$3 shell=$4 uid=$5 gecos=$6 pw=$7
		for g in $(echo "$groups" | tr , ' '); do
			# EL kickstarts say --groups=wheel; Debian has no wheel group, anaconda would create it too.
			chroot "$SYSROOT" getent group "$g" >/dev/null || run chroot "$SYSROOT" groupadd "$g"
		done
		set -- -m
		[ -n "$groups" ] && set -- "$@" -G "$groups"
		[ -n "$home" ] && set -- "$@" -d "$home"
		[ -n "$shell" ] && set -- "$@" -s "$shell"
		[ -n "$uid" ] && set -- "$@" -u "$uid"
		[ -n "$gecos" ] && set -- "$@" -c "$gecos"
		[ -n "$pw" ] && set -- "$@" -p "$pw"
		run chroot "$SYSROOT" useradd "$@" "$name"
		IFS=$TAB
	done
	IFS=' '
	for s in $ENABLE; do
		# EL names its SSH service sshd; Debian's sysv script is ssh.
		[ "$s" = sshd ] && s=ssh
		if [ -x "$SYSROOT/etc/init.d/$s" ]; then
			run chroot "$SYSROOT" update-rc.d "$s" defaults
			run chroot "$SYSROOT" update-rc.d "$s" enable
		else
			logline ERR "services: cannot enable $s: no such service"
		fi
	done
	for s in $DISABLE; do
		[ "$s" = sshd ] && s=ssh
		if [ -x "$SYSROOT/etc/init.d/$s" ]; then run chroot "$SYSROOT" update-rc.d "$s" disable; else
			logline WARN "services: cannot disable $s: no such service"
		fi
	done
	install_bootloader
}
install_bootloader() {
	STAGE=install_bootloader
	say "Installing boot loader"
	kv=$(uname -r)
	# The installed system boots the installer's kernel and this same initramfs in its root= mode.
	run cp "$REPO/isolinux/vmlinuz" "$SYSROOT/boot/vmlinuz-$kv"
	run cp "$REPO/isolinux/initrd.img" "$SYSROOT/boot/initrd.img-$kv"
	mkdir -p "$SYSROOT/lib/modules"
	cp -a "/lib/modules/$kv" "$SYSROOT/lib/modules/"
	[ "$BOOTLOC" = none ] && { logline INFO "bootloader --location=none: no boot loader installed"; return 0; }
	mkdir -p "$SYSROOT/boot/extlinux"
	{
		echo "DEFAULT linux"
		echo "TIMEOUT $((TIMEOUT * 10))"
		echo "LABEL linux"
		echo "  KERNEL /boot/vmlinuz-$kv"
		echo "  INITRD /boot/initrd.img-$kv"
		echo "  APPEND root=LABEL=root ro $APPEND"
	} >"$SYSROOT/boot/extlinux/extlinux.conf"
	run chroot "$SYSROOT" extlinux --install /boot/extlinux
	[ "$BOOTLOC" = mbr ] && run dd if="$SYSROOT/usr/lib/syslinux/mbr/mbr.bin" of=/dev/vda bs=440 count=1 conv=notrunc
	return 0
}
run_post() {
	STAGE=run_post_scripts
	say "Running post-installation scripts"
	while IFS="$TAB" read -r kind ln rest; do
		[ "$kind" = S ] || continue
		IFS=$TAB
		set -f
		set -- $rest
		set +f
		IFS=' '
		n=$1
		shift
		opts "$ln" %post "interpreter log logfile" "erroronfail nochroot" "$@"
		interp=${O_interpreter:-/bin/sh}
		log=${O_log:-${O_logfile:-}}
		script=$SCRIPTS/ks-script-$n
		logline INFO "Running kickstart %post script (line $ln)"
		if [ "$FAIL" = post ]; then
			# testbed.fail=post: the script fails as if its last command had exited 1.
			echo "exit 1" >>"$script"
			O_erroronfail=1
		fi
		if [ -n "$O_nochroot" ]; then
			out=/tmp/ks-script-$n.log
			"$interp" "$script" >"$out" 2>&1
			rc=$?
			[ -n "$log" ] && cp "$out" "$log"
		else
			cp "$script" "$SYSROOT/tmp/ks-script-$n"
			chroot "$SYSROOT" "$interp" "/tmp/ks-script-$n" >"$SYSROOT/tmp/ks-script-$n.log" 2>&1
			rc=$?
			out=$SYSROOT/tmp/ks-script-$n.log
			[ -n "$log" ] && cp "$out" "$SYSROOT$log"
			rm -f "$SYSROOT/tmp/ks-script-$n"
		fi
		cat "$out" >>"$LOGFILE"
		if [ $rc -ne 0 ]; then
			logline ERR "Error code $rc running the kickstart script at line $ln"
			if [ -n "$O_erroronfail" ]; then
				{
					echo "Error code $rc running the kickstart script at line $ln"
					echo "%post scripts failed"
					echo "There was an error running the kickstart script at line $ln.  This is a fatal error and"
					echo "installation will be aborted.  The details of this error are:"
					echo
					tail -n 20 "$out"
				} >/dev/console
				stop_here
			fi
		fi
		rm -f "$SYSROOT/tmp/ks-script-$n.log"
	done <"$PLAN"
	IFS=' '
}
finish() {
	STAGE=finish
	mkdir -p "$SYSROOT/var/log/anaconda"
	cp "$KS" "$SYSROOT/root/anaconda-ks.cfg"
	chmod 600 "$SYSROOT/root/anaconda-ks.cfg"
	say "Installation complete."
	cp "$LOGFILE" "$SYSROOT/var/log/anaconda/anaconda.log"
	for d in dev proc sys; do umount "$SYSROOT/$d" 2>/dev/null; done
	umount "$SYSROOT" || crash "cannot unmount $SYSROOT"
	umount "$REPO" 2>/dev/null
	sync
	case "$FINISH" in
	poweroff) say "Powering off"; poweroff -f ;;
	reboot) say "Rebooting"; reboot -f ;;
	*) say "Halting: the kickstart has no shutdown, poweroff or reboot"; stop_here ;;
	esac
	stop_here
}

install() {
	FAIL=$(cmdline_arg testbed.fail)
	ks=$(cmdline_arg inst.ks)
	find_logport
	say "Starting installer, one moment..."
	say "testbed installer for TESTBED 1 (a stand-in for anaconda) started on kernel $(uname -r)"
	# Log-port only (lossless, unlike the serial console under host load): tests compare a typed boot line.
	logline INFO "kernel command line: $(cat /proc/cmdline)"
	repo=$(cmdline_arg inst.repo)
	case "$repo" in
	"" | cdrom) find_media ;;
	http://*) ;;
	*) crash "unsupported inst.repo=$repo (the testbed installs from cdrom or http://)" ;;
	esac
	case "$ks" in
	http://*) network_up; fetch_kickstart "$ks" ;;
	"") crash "no inst.ks= on the kernel command line: the testbed installer only runs kickstart installs" ;;
	*) crash "unsupported inst.ks=$ks (the testbed fetches plain http:// only)" ;;
	esac
	case "$repo" in http://*) fetch_repo "$repo" ;; esac
	[ "$FAIL" = panic ] && { say "testbed.fail=panic: crashing the kernel"; echo c >/proc/sysrq-trigger; exit 1; }
	case "$FAIL" in cmdline | hub | retry | frames | dracut | oops) fail_as "$FAIL" ;; esac
	mkdir -p "$SCRIPTS"
	read_plan
	make_storage
	[ "$FAIL" = crash ] && crash "testbed.fail=crash requested on the kernel command line"
	install_base
	bind_mounts
	configure
	run_post
	finish
}

early_mounts
read -r up _ </proc/uptime
BOOT_EPOCH=$(($(date +%s) - ${up%.*}))
: >"$LOGFILE"
load_modules
if cmdline_arg root >/dev/null && ! cmdline_arg inst.ks >/dev/null; then
	boot_installed
fi
install
