#!/bin/sh
# run.sh - the stack tests on every CPython of the version matrix: builds
# (or reuses) the Debian chroots, builds TimeGlass inside each from this
# source tree (bind-mounted read-only at /src, build directory in the
# chroot's /var/tmp), and runs the frame-reader unit test and tests/stacks
# with each interpreter.
#
#   tests/matrix/run.sh              # trixie (3.13) and sid (3.14, 3.15)
#   tests/matrix/run.sh trixie       # one chroot
#
# Needs root (chroot, mount). Exit status: 0 if every interpreter passed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
roots=${TIMEGLASS_CHROOTS:-/var/cache/timeglass-chroots}
names=${*:-trixie sid}
status=0
tree=$(printf '%s' "$src" | md5sum | cut -c1-8)

pythons_of() {
	case $1 in
	trixie) echo python3.13 ;;
	sid) echo python3.14 python3.15 ;;
	*) echo python3 ;;
	esac
}

for name in $names; do
	"$here/build-chroot.sh" "$name"
	root=$roots/$name
	mkdir -p "$root/src"
	mounted=0
	if ! mountpoint -q "$root/src"; then
		mount --bind "$src" "$root/src"
		mount -o remount,bind,ro "$root/src" 2>/dev/null || true
		mounted=1
	fi
	mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
	for py in $(pythons_of "$name"); do
		if [ ! -x "$root/usr/bin/$py" ]; then
			echo "== $name/$py: not installed, skipped"
			continue
		fi
		echo "== $name/$py"
		start=$(date +%s)
		# One build directory per source tree: ninja compares times only,
		# so a directory built from another checkout (a CI clone, say) whose
		# files are newer would look up to date and link stale objects.
		if chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
			PY="$py" TREE="$tree" sh -ec '
			b=/var/tmp/tg2-build-$PY-$TREE
			[ -e $b/build.ninja ] || meson setup $b /src >/dev/null
			ninja -C $b preload/libtimeglass.so cli/timeglass tests/unit/test-pyframes.so >/dev/null
			$PY /src/tests/unit/test-pyframes.py $b/tests/unit/test-pyframes.so
			TIMEGLASS_BUILD=$b TIMEGLASS_TEST_PYTHON=/usr/bin/$PY \
				python3 -m pytest -q -p no:cacheprovider /src/tests/stacks'; then
			echo "== $name/$py: passed in $(( $(date +%s) - start )) s"
		else
			echo "== $name/$py: FAILED"
			status=1
		fi
	done
	umount "$root/proc" 2>/dev/null || true
	[ $mounted = 0 ] || umount "$root/src"
done
exit $status
