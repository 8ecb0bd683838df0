# /lib/testbed/mounts.sh: shell helpers sourced by the testbed's mountkernfs.sh and mountdevsubfs.sh.
# Builtins only: under QEMU TCG every fork early in the boot costs ~0.1 s.

# " /proc /sys ... ": the current mount points, read with builtins (no grep, no mountpoint).
read_mounts() {
	MOUNTS=" "
	[ -r /proc/mounts ] || return 0
	while read -r _ dir _; do MOUNTS="$MOUNTS$dir "; done </proc/mounts
}
# mnt TYPE DIR [OPTIONS]: mount TYPE on DIR unless DIR is a mount point already (then return 1).
mnt() {
	case "$MOUNTS" in *" $2 "*) return 1 ;; esac
	mount -n -t "$1" ${3:+-o "$3"} "$1" "$2"
}
