#!/usr/bin/env bash
# The package test, on this machine: dpkg -i the .deb, a libvirt start handed over by the
# installed prezerod, CLI and hook (the package's symlink in qemu.d), dpkg -r, dpkg -P.
# Afterwards every file the package put down is gone (conffiles after the purge) and the
# file list of /etc, /usr and /var/lib (less /var/lib/dpkg) is what it was before.
#   scripts/deb-test.sh DEB        (make deb-test builds the package first)
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(realpath "${1:?usage: $0 DEB}")
if dpkg-query -W -f='${Status}' prezero 2>/dev/null | grep -q installed; then
    echo "deb-test: a prezero package is installed on this host already; remove it first (dpkg -r prezero)" >&2; exit 1
fi
lists=$(mktemp -d /tmp/prezero-deb-test.XXXXXX)
files() { find /etc /usr /var/lib -path /var/lib/dpkg -prune -o -print 2>/dev/null | sort; }
files > "$lists/before"
installed=
undo() {
    local status=$?
    set +e
    [ -n "$installed" ] && dpkg -P prezero > /dev/null 2>&1
    rm -rf "$lists"
    exit $status
}
trap undo EXIT

echo "== dpkg -i $(basename "$deb")"
installed=1
dpkg -i "$deb" | sed 's/^/  /'
for f in /usr/sbin/prezerod /usr/bin/prezero /usr/libexec/prezero/prezero-hook /usr/libexec/prezero/prezero-bench; do
    [ -x "$f" ] || { echo "deb-test: $f is not installed" >&2; exit 1; }
done
[ "$(readlink /etc/libvirt/hooks/qemu.d/prezero)" = /usr/libexec/prezero/prezero-hook ] || { echo "deb-test: the hook is not the symlink to libexec" >&2; exit 1; }
man -w prezero prezerod prezero-hook prezerod.yaml > /dev/null || { echo "deb-test: man cannot find the pages" >&2; exit 1; }
echo "  $(dpkg -L prezero | wc -l) paths; Depends: $(dpkg-query -W -f='${Depends}' prezero)"

# A start handed over by the installed binaries and hook, in the demo's private environment
# (`prezero lab run` of the installed CLI), with the package's hook pointed at the lab's
# prezerod through hook.conf (saved and restored).
bin=$(mktemp -d /tmp/prezero-deb-bin.XXXXXX)
ln -s /usr/sbin/prezerod /usr/bin/prezero /usr/libexec/prezero/prezero-hook "$bin"/
/usr/bin/prezero lab run --bin "$bin" --reserve 2M:192 --target 256M --libvirt installed -- sh -c '
    set -e
    name=pz-deb-test
    /usr/bin/prezero lab define "$name" --memory 256M --uuid 5e6d0c1a-0000-4000-8000-0000000000de > /dev/null
    /usr/bin/prezero lab settle
    virsh -q -c qemu:///system start "$name" > /dev/null
    grep -q "pc.ram: handed over" "$PREZERO_LAB_LOG" || { echo "deb-test: the start was not handed over by the installed hook; see the log above" >&2; exit 1; }
    echo "  virsh start $name: pc.ram handed over by the installed prezerod, through the installed hook"
' || { rm -rf "$bin"; exit 1; }
rm -rf "$bin"

echo "== dpkg -r prezero"
dpkg -r prezero | sed 's/^/  /'
for f in /usr/sbin/prezerod /etc/libvirt/hooks/qemu.d/prezero; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || { echo "deb-test: $f is still there after dpkg -r" >&2; exit 1; }
done
[ -f /etc/prezero/prezerod.yaml ] || { echo "deb-test: dpkg -r removed a conffile; only a purge may" >&2; exit 1; }
echo "== dpkg -P prezero"
dpkg -P prezero | sed 's/^/  /'
installed=
files > "$lists/after"
if ! diff -u "$lists/before" "$lists/after" > "$lists/diff"; then
    echo "deb-test: /etc, /usr and /var/lib differ from before the install:" >&2
    grep '^[-+]/' "$lists/diff" | head -20 >&2
    exit 1
fi
echo "deb-test: installed, used and purged; the file lists of /etc, /usr and /var/lib are as before ($(wc -l < "$lists/before") paths)"
