#!/bin/sh
# Runs the dashboard tests: the API tests (pytest) and, when Chromium and
# web/node_modules are there, the end-to-end tests in headless Chromium.
#   tests/ui/run.sh [BUILD_DIR]     (default: build)
# TIMEGLASS_UI_CMD overrides the server command (default BUILD_DIR/server/timeglass-ui).
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
export TIMEGLASS_UI_CMD="${TIMEGLASS_UI_CMD:-$build/server/timeglass-ui}"
/usr/bin/python3 -m pytest -q "$here"
if [ -x /usr/bin/chromium ] && [ -d "$root/web/node_modules/playwright-core" ]; then
	node --test "$here/e2e.mjs"
else
	echo "e2e: skipped (needs /usr/bin/chromium and npm ci --prefix web)"
fi
