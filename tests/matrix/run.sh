#!/bin/sh
# run.sh - the test suites on the newer CPythons and FastAPIs of the version
# matrix: builds (or reuses) the Debian chroots, builds TimeGlass inside each
# from this source tree (bind-mounted read-only at /src, build directory in
# the chroot's /var/tmp), and runs the frame-reader unit test and the suites
# with each interpreter:
#
#   trixie  python3.13 (FastAPI 0.115)   stacks integration python sql realapps
#   sid     python3.14 (current FastAPI) stacks integration python sql realapps otel
#   sid     python3.15                   stacks
#
# (the integration, Python-package, SQL and real-app suites run the chroot's
# default python3; the stack tests take any interpreter; the OpenTelemetry
# export tests need python3-opentelemetry-proto, which only sid packages.)
#
# With the Python-package suite, the stable-ABI extension built on the host
# (${TIMEGLASS_BUILD:-build}/python/_speedups.abi3.so, when there is one) runs
# the abi3 tests of tests/python/test_speedups.py on the chroot's python3:
# the module made for 3.11 serves the newer interpreter.
#
#   tests/matrix/run.sh              # trixie and sid
#   tests/matrix/run.sh trixie       # one chroot
#   TIMEGLASS_MATRIX_SUITES=stacks tests/matrix/run.sh   # these suites only
#
# Needs root (chroot, mount). Prints "== NAME/PY SUITE: passed" or ": FAILED"
# per suite. Exit status: 0 if every suite passed.
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

# The suites for interpreter $2 of chroot $1: all of them on the chroot's
# default python3, the stack tests on the others.
suites_of() {
	default=$(readlink -f "$roots/$1/usr/bin/python3")
	if [ "${default##*/}" = "$2" ]; then
		all="stacks integration python sql realapps"
		[ "$1" != sid ] || all="$all otel"
	else
		all="stacks"
	fi
	want=${TIMEGLASS_MATRIX_SUITES:-$all}
	for s in $all; do
		case " $want " in *" $s "*) printf '%s ' "$s" ;; esac
	done
}

for name in $names; do
	"$here/build-chroot.sh" "$name"
	root=$roots/$name
	mkdir -p "$root/src"
	mounted=0
	# A mount left by an earlier run of another (maybe deleted) checkout
	# would build that tree: keep an existing /src only if it is this one.
	if mountpoint -q "$root/src" && [ "$(stat -c %d:%i "$root/src")" != "$(stat -c %d:%i "$src")" ]; then
		umount "$root/src" 2>/dev/null || umount -l "$root/src"
	fi
	if ! mountpoint -q "$root/src"; then
		mount --bind "$src" "$root/src"
		mount -o remount,bind,ro "$root/src" 2>/dev/null || true
		mounted=1
	fi
	proc_mounted=0
	if ! mountpoint -q "$root/proc"; then
		mount -t proc proc "$root/proc" && proc_mounted=1
	fi
	for py in $(pythons_of "$name"); do
		if [ ! -x "$root/usr/bin/$py" ]; then
			echo "== $name/$py: not installed, skipped"
			continue
		fi
		start=$(date +%s)
		# One build directory per source tree: ninja compares times only,
		# so a directory built from another checkout (a CI clone, say) whose
		# files are newer would look up to date and link stale objects.
		if ! chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
			PY="$py" TREE="$tree" sh -ec '
			b=/var/tmp/tg2-build-$PY-$TREE
			[ -e $b/build.ninja ] || meson setup $b /src >/dev/null
			ninja -C $b >/dev/null
			$PY /src/tests/unit/test-pyframes.py $b/tests/unit/test-pyframes.so'; then
			echo "== $name/$py build: FAILED"
			status=1
			continue
		fi
		echo "== $name/$py build: passed in $(( $(date +%s) - start )) s"
		for suite in $(suites_of "$name" "$py"); do
			start=$(date +%s)
			echo "== $name/$py $suite"
			if chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
				TIMEGLASS_BUILD="/var/tmp/tg2-build-$py-$tree" TIMEGLASS_TEST_PYTHON="/usr/bin/$py" \
				sh -c "cd /tmp && exec python3 -m pytest -q -p no:cacheprovider /src/tests/$suite"; then
				echo "== $name/$py $suite: passed in $(( $(date +%s) - start )) s"
			else
				echo "== $name/$py $suite: FAILED"
				status=1
			fi
		done
		host_abi3=${TIMEGLASS_BUILD:-$src/build}/python/_speedups.abi3.so
		case " $(suites_of "$name" "$py") " in
		*" python "*)
			if [ -f "$host_abi3" ]; then
				start=$(date +%s)
				abi3_dir=/var/tmp/tg2-abi3-$tree
				mkdir -p "$root$abi3_dir"
				cp "$host_abi3" "$root$abi3_dir/_speedups.abi3.so"
				echo "== $name/$py host-built abi3"
				if chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
					LC_ALL=C.UTF-8 TIMEGLASS_BUILD="/var/tmp/tg2-build-$py-$tree" \
					TIMEGLASS_TEST_PYTHON="/usr/bin/$py" TIMEGLASS_TEST_ABI3="$abi3_dir/_speedups.abi3.so" \
					sh -c "cd /tmp && exec python3 -m pytest -q -p no:cacheprovider -k 'abi3_module or abi3_and_ctypes' /src/tests/python/test_speedups.py"; then
					echo "== $name/$py host-built abi3: passed in $(( $(date +%s) - start )) s"
				else
					echo "== $name/$py host-built abi3: FAILED"
					status=1
				fi
			fi
			;;
		esac
	done
	[ $proc_mounted = 0 ] || umount "$root/proc" 2>/dev/null || true
	# Busy (a process of a test still inside): detach it all the same, so
	# the next run does not find it.
	[ $mounted = 0 ] || umount "$root/src" 2>/dev/null || umount -l "$root/src"
done
exit $status
