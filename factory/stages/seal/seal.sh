#!/bin/sh
# Generalise an installed system so every machine made from it is its own: run in the guest as
# `sh -s -- "" KEY_COMMENT` over SSH, or against a folder as `sh seal.sh ROOT KEY_COMMENT` (the unit tests).
# Every step prints what it removed, so the build record lists what really went.
set -u
R="${1:-}"
KEY_COMMENT="${2:?the build key comment}"

# build key: only the factory's own line goes; keys the kickstart put there stay.
f="$R/root/.ssh/authorized_keys"
if [ -f "$f" ] && grep -q -F "$KEY_COMMENT" "$f"; then
    grep -v -F "$KEY_COMMENT" "$f" >"$f.seal" || true
    cat "$f.seal" >"$f"
    rm -f "$f.seal"
    echo "$f: build key line"
fi

# ssh host keys: each instance makes its own at first boot.
for f in "$R"/etc/ssh/ssh_host_*; do
    [ -e "$f" ] && rm -f "$f" && echo "$f"
done

# machine-id: truncated, not deleted: systemd treats an empty one as "first boot" and makes a new one.
f="$R/etc/machine-id"
if [ -s "$f" ]; then
    : >"$f"
    echo "$f: truncated"
fi
f="$R/var/lib/dbus/machine-id"
if [ -f "$f" ] && [ ! -L "$f" ]; then
    rm -f "$f"
    echo "$f"
fi

# logs: truncated (services expect their files); the journal's per-machine folders go.
if [ -d "$R/var/log" ]; then
    find "$R/var/log" -type f -size +0 ! -path "*/journal/*" -exec sh -c '
        for f; do : >"$f"; echo "$f: truncated"; done' sh {} +
fi
if [ -d "$R/var/log/journal" ]; then
    find "$R/var/log/journal" -mindepth 1 -maxdepth 1 -exec rm -rf {} + -exec echo {} \;
fi

# shell history, DHCP leases, kickstart copies (they hold password hashes).
for f in "$R"/root/.bash_history "$R"/root/.ash_history "$R"/home/*/.bash_history \
    "$R"/var/lib/dhclient/* "$R"/var/lib/dhcp/*.leases "$R"/var/lib/NetworkManager/*.lease \
    "$R"/root/anaconda-ks.cfg "$R"/root/original-ks.cfg "$R"/root/ks.cfg "$R"/tmp/ks.cfg; do
    [ -e "$f" ] && rm -f "$f" && echo "$f"
done

# ifcfg HWADDR/UUID: the build's NIC is not the instance's.
for f in "$R"/etc/sysconfig/network-scripts/ifcfg-*; do
    [ -f "$f" ] || continue
    if grep -q -E "^(HWADDR|UUID)=" "$f"; then
        sed -i -E "/^(HWADDR|UUID)=/d" "$f"
        echo "$f: HWADDR/UUID"
    fi
done
sync
