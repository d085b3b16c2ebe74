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
#
# The mirror is the one this machine's apt uses (DEBIAN_MIRROR overrides it).
set -eu
name=${1:?usage: build-chroot.sh trixie|sid}
root=${TIMEGLASS_CHROOTS:-/var/cache/timeglass-chroots}/$name

# The first Debian archive (not the security one) in this machine's apt
# sources: deb822 "URIs:" stanzas, else one-line "deb URL SUITE" entries.
machine_mirror() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk '/^URIs:/ {uri = $2} /^Suites:/ {sec = ($0 ~ /-security/)}
		     /^$/ {if (uri != "" && !sec && !done) {print uri; done = 1} uri = ""; sec = 0}
		     END {if (uri != "" && !sec && !done) print uri}' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk '$1 == "deb" && $0 !~ /-security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' "$f"
	done
}
mirror=${DEBIAN_MIRROR:-$(machine_mirror | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}

ready=.timeglass-ready-6 # bump when the package list changes
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
# Build and stack tests; then what the integration, Python-package and SQL
# suites drive (servers, drivers, PostgreSQL, load, a proxy).
pkgs="python3 python3-dev python3-fastapi python3-uvicorn python3-httpx python3-pytest gcc libc6-dev meson ninja-build pkg-config libsqlite3-dev procps libunwind-dev libelf-dev zlib1g-dev libcjson-dev
 python3-httptools python3-uvloop python3-gunicorn python3-requests python3-aiohttp python3-wsproto python3-multipart
 python3-psycopg2 python3-psycopg python3-asyncpg python3-sqlalchemy python3-sqlmodel python3-databases
 postgresql openssl curl wrk nginx-light sqlite3 util-linux"
run() { chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
run apt-get -o Acquire::Check-Valid-Until=false update
# No service starts inside the chroot (PostgreSQL, nginx): the tests start their own.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# Some maintainer scripts (postgresql-common) need /proc.
proc_mounted=0
if ! mountpoint -q "$root/proc"; then
	mount -t proc proc "$root/proc" && proc_mounted=1
fi
trap '[ $proc_mounted = 0 ] || umount "$root/proc" 2>/dev/null || true' EXIT
run apt-get install -y --no-install-recommends $pkgs
if [ "$name" = sid ]; then
	# Extra interpreters, when the archive has them.
	for v in 3.14 3.15; do
		run apt-get install -y --no-install-recommends "python$v" "python$v-dev" || true
	done
	# The OpenTelemetry export tests (tests/otel) decode with the
	# OpenTelemetry project's own protocol definitions.
	run apt-get install -y --no-install-recommends python3-opentelemetry-proto python3-protobuf
fi
run apt-get clean
touch "$root/$ready"
echo "chroot $root: built"
