#!/usr/bin/env bash
# Makes sure the browser tests (tests/browser) can run: Debian's Chromium at /usr/bin/chromium and
# playwright-core (which downloads no browser) in tests/browser/node_modules.
#
# Idempotent and quick on rerun:
#   - apt-get runs (`update`, then `install chromium`) only when /usr/bin/chromium is missing;
#   - `npm ci` runs only when node_modules is missing or was installed from another
#     package-lock.json (a stamp in node_modules holds the lock file's hash).
# Works as root on a fresh Debian machine with node >= 20 and npm (the npm registry must be
# reachable, and Debian's packages for the first run).
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ -x "$CHROMIUM" ]; then
    echo "ensure-browser: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") already installed"
else
    echo "ensure-browser: installing chromium from Debian's packages" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null
    [ -x "$CHROMIUM" ] || { echo "ensure-browser: $CHROMIUM still missing" >&2; exit 1; }
fi

command -v node >/dev/null || { echo "ensure-browser: node (>= 20) is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "ensure-browser: npm is required" >&2; exit 1; }

cd tests/browser
stamp=node_modules/.jiva-package-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -d node_modules/playwright-core ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "ensure-browser: tests/browser/node_modules up to date"
else
    echo "ensure-browser: npm ci in tests/browser" >&2
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
    echo "$want" > "$stamp"
fi
