#!/usr/bin/env bash
# Give QEMU's user access to /dev/kvm for a run, as Debian's udev rule would, and put
# the device's group and mode back afterwards.
#   scripts/kvm.sh grant PREZERO_BIN   (PREZERO_BIN: the prezero CLI, which decides)
#   scripts/kvm.sh restore
# On a host without udev /dev/kvm is root:root 0600: libvirt's QEMU user cannot open
# it, libvirt re-probes QEMU's capabilities at every start (~4 s) and guests run under
# TCG. `prezero accel --libvirt` says when that is so; only then is anything changed.
# The group and mode found before are saved, and `restore` writes them back.
set -euo pipefail
saved=/run/prezero-kvm.saved
dev=/dev/kvm

case "${1:-}" in
grant)
    cli=${2:?usage: $0 grant PREZERO_BIN}
    if [ -e "$dev" ] && "$cli" accel --libvirt --json | grep -q '"reprobe_trap" *: *true'; then
        [ -f "$saved" ] || stat -c '%g %a' "$dev" > "$saved"
        chgrp kvm "$dev" && chmod 0660 "$dev"
        echo "kvm: $dev set to group kvm, mode 0660 for this run (was $(cat "$saved")); restored at exit"
    fi
    "$cli" accel --libvirt | head -n 1
    ;;
restore)
    if [ -f "$saved" ]; then
        read -r gid mode < "$saved"
        chgrp "$gid" "$dev" && chmod "$mode" "$dev"
        rm -f "$saved"
        echo "kvm: $dev restored to group $gid, mode $mode"
    fi
    ;;
*)
    echo "usage: $0 grant PREZERO_BIN | restore" >&2
    exit 2
    ;;
esac
