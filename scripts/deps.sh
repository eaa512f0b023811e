#!/usr/bin/env bash
# Install the Debian 12 packages prezero builds, tests and demos with. Idempotent.
set -euo pipefail
pkgs=(libnuma-dev numactl libvirt-dev libvirt-daemon-system libvirt-clients qemu-system-x86 util-linux bc gcc libc6-dev binutils
      liburing-dev  # the hostile-tenant suite's io_uring techniques (Tests/hostile/hostile.c)
      prometheus systemd  # promtool checks the metrics textfile and the alert rules; systemd-analyze verifies the units
      prometheus-node-exporter curl  # a real scrape of the textfile, and its PromQL asked over HTTP
      dpkg-dev lintian  # make deb: dpkg-shlibdeps computes Depends, lintian checks the package
      mmdebstrap  # the second libvirt/QEMU stack's root (scripts/stack.sh)
      numad)  # libvirt's placement='auto' asks it, for real in the tests
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "deps: ok"
