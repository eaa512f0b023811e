#!/usr/bin/env bash
# make deb: prezero_VERSION_amd64.deb, built with dpkg-deb from a staged `make install`
# (DESTDIR, PREFIX=/usr) of the release binaries, which link the Swift runtime statically:
# the package depends on Debian's own libraries alone, as dpkg-shlibdeps computes them.
#   scripts/deb.sh [OUT_DIR]      (default: .build/deb; VERSION overrides the version)
# The hook binary lives in /usr/libexec/prezero; /etc/libvirt/hooks/qemu.d/prezero is a
# symlink to it (libvirt follows it), so that no binary is a conffile that outlives dpkg -r.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.build/deb}
bin=.build/release
for b in prezerod prezero prezero-hook prezero-bench; do
    [ -x "$bin/$b" ] || { echo "deb: $bin/$b is missing; run make release first" >&2; exit 1; }
done
# A Debian version must start with a digit: the commit's date and hash.
version=${VERSION:-0.$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d)+g$(git rev-parse --short HEAD 2>/dev/null || echo 0)}
work=$(mktemp -d /tmp/prezero-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$out" "$root"

make -s install-files BIN="$bin" DESTDIR="$root" PREFIX=/usr SYSTEMD_DIR=/lib/systemd/system > /dev/null
# The hook: the binary in libexec, a symlink where libvirt looks.
ln -sf /usr/libexec/prezero/prezero-hook "$root/etc/libvirt/hooks/qemu.d/prezero"
# Binaries without their symbol tables and debug sections (the Swift runtime needs neither).
strip --strip-unneeded "$root"/usr/sbin/prezerod "$root"/usr/bin/prezero "$root"/usr/libexec/prezero/*
# bash-completion sources the file: no interpreter line.
sed -i '1{/^#!/d}' "$root/usr/share/bash-completion/completions/prezero"
# Debian's zsh reads vendor completions from here.
mkdir -p "$root/usr/share/zsh/vendor-completions"
mv "$root/usr/share/zsh/site-functions/_prezero" "$root/usr/share/zsh/vendor-completions/_prezero"
rmdir "$root/usr/share/zsh/site-functions"
# Documentation as Debian keeps it: man pages and the changelog compressed, a copyright file.
gzip -9n "$root"/usr/share/man/man*/*
doc=$root/usr/share/doc/prezero
mkdir -p "$doc/examples"
cp -r examples/prometheus examples/systemd examples/prezerod.yaml "$doc/examples/"
cp packaging/copyright "$doc/copyright"
install -D -m 644 packaging/lintian-overrides "$root/usr/share/lintian/overrides/prezero"
printf 'prezero (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- prezero developers <prezero@packages.invalid>  %s\n' \
    "$version" "$(git rev-parse HEAD 2>/dev/null || echo unknown)" "$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")" \
    | gzip -9n > "$doc/changelog.gz"
chmod -R u=rwX,go=rX "$root"
chmod 755 "$root"/usr/sbin/* "$root"/usr/bin/* "$root"/usr/libexec/prezero/*

# Depends: what the dynamic binaries link (prezero-hook and prezero-bench are static).
mkdir -p "$work/debian"
printf 'Source: prezero\n\nPackage: prezero\nArchitecture: amd64\n' > "$work/debian/control"
depends=$(cd "$work" && dpkg-shlibdeps -O "$root/usr/sbin/prezerod" "$root/usr/bin/prezero" | sed -n 's/^shlibs:Depends=//p')

mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<EOF
Package: prezero
Version: $version
Architecture: amd64
Maintainer: prezero developers <prezero@packages.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Recommends: libvirt-daemon-system, qemu-system-x86
Section: admin
Priority: optional
Description: pre-zeroed huge pages for fast VM launch
 A VM whose RAM is backed by hugetlbfs starts slowly because the kernel zeroes
 every huge page when the VM first touches it. prezerod keeps pools of
 hugetlbfs files on each NUMA node whose pages the kernel has already zeroed,
 and hands them to the VMM at launch: through libvirt's qemu hook, or with
 prezero launch for orchestration that runs QEMU directly. Released files go
 back to the kernel; no file ever serves two tenants.
EOF
printf '/etc/prezero/prezerod.yaml\n/etc/prezero/hook.conf\n' > "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 755 "packaging/$s" "$root/DEBIAN/$s"; done

deb=$out/prezero_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" > /dev/null
echo "$deb"
