#!/bin/sh
# build-chroot.sh - builds (once) a Debian chroot for the CPython version
# matrix of the stack tests, under /var/cache/timeglass-chroots/NAME.
#
#   tests/matrix/build-chroot.sh trixie   # Python 3.13, FastAPI 0.115
#   tests/matrix/build-chroot.sh sid      # Python 3.14 (and 3.15 if packaged)
#
# A chroot that already exists (marked by .timeglass-ready-N, N the version of
# the package list below) is reused as is; an older one gets the missing
# packages; delete the directory to rebuild it. Needs root and debootstrap.
set -eu
name=${1:?usage: build-chroot.sh trixie|sid}
root=${TIMEGLASS_CHROOTS:-/var/cache/timeglass-chroots}/$name
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

ready=.timeglass-ready-2 # bump when the package list changes
if [ -e "$root/$ready" ]; then
	echo "chroot $root: ready (reused)"
	exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 77; }
mkdir -p "$root"
if [ ! -e "$root/usr/bin/apt-get" ]; then
	debootstrap --variant=minbase "$name" "$root" "$mirror"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
pkgs="python3 python3-dev python3-fastapi python3-uvicorn python3-httpx python3-pytest gcc libc6-dev meson ninja-build pkg-config libsqlite3-dev procps libunwind-dev libelf-dev zlib1g-dev"
run() { chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
run apt-get -o Acquire::Check-Valid-Until=false update
run apt-get install -y --no-install-recommends $pkgs
if [ "$name" = sid ]; then
	# Extra interpreters, when the archive has them.
	for v in 3.14 3.15; do
		run apt-get install -y --no-install-recommends "python$v" "python$v-dev" || true
	done
fi
run apt-get clean
touch "$root/$ready"
echo "chroot $root: built"
