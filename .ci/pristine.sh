#!/usr/bin/env bash
# Run a command in a pristine Debian 12 root, as a newcomer's fresh machine would: made anew by mmdebstrap
# (minbase + python3 + ca-certificates: Debian's own Python 3.11, PEP 668, no pip, no kernel in /boot),
# with only what reaches the same package registries copied in: apt sources and settings, DNS, pip's
# configuration and the host's CA bundle (pip reaches PyPI through this machine's certificate
# authorities: without it, CERTIFICATE_VERIFY_FAILED). The project is copied in as a clean checkout.
#
#   .ci/pristine.sh 'COMMAND'        runs COMMAND in /root/image-factory inside the root, as root
#
# Nothing is kept: the root is deleted afterwards, whatever happens.
set -euo pipefail
command=${1:?usage: pristine.sh COMMAND}
repo=$(cd "$(dirname "$0")/.." && pwd)
root=$(mktemp -d /var/tmp/factory-pristine.XXXXXX)
mounted=()

cleanup() {
    local m
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[$i]}" 2>/dev/null || true
    done
    # Nothing may stay running inside the root (QEMU, the moto server...).
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        if [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    done
    rm -rf --one-file-system "$root"
}
trap cleanup EXIT

sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
echo "pristine: mmdebstrap bookworm (minbase, python3, ca-certificates) into $root"
mmdebstrap --quiet --variant=minbase --include=python3,ca-certificates bookworm "$root" "$sources"

# What reaches the registries, nothing else.
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/"
mkdir -p "$root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
[ -d /etc/xdg/pip ] && mkdir -p "$root/etc/xdg" && cp -a /etc/xdg/pip "$root/etc/xdg/pip"

# A clean checkout of what is committed (no build/, caches or virtual environments of the host).
git -C "$repo" archive --format=tar --prefix=image-factory/ HEAD | tar -x -C "$root/root"

for m in proc sys dev dev/pts; do
    mkdir -p "$root/$m"
    mount --bind "/$m" "$root/$m"
    mounted+=("$root/$m")
done
mount -t tmpfs tmpfs "$root/tmp"
mounted+=("$root/tmp")

if [ -e "$root/boot/vmlinuz" ] || ls "$root"/boot/vmlinuz-* >/dev/null 2>&1; then
    echo "pristine: the root has a kernel in /boot: it is not what a fresh machine looks like" >&2
    exit 1
fi
if chroot "$root" python3 -m pip --version >/dev/null 2>&1; then
    echo "pristine: the root's Python has pip: it is not a stock Debian 12" >&2
    exit 1
fi

echo "pristine: running in the root: $command"
# A login-like environment: none of the host's variables (its PATH, its Python, PIP_*, FACTORY_*) get in.
chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI="${CI:-}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /root/image-factory && set -euo pipefail && $command"
