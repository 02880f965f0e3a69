#!/usr/bin/env bash
# Runs the browser tests of the built-in chat page (tests/browser, node's test runner): each
# file starts the real server binary on a free port with a temporary data directory (and a
# stand-in copilot), and drives Debian's headless Chromium through playwright-core.
# Screenshots go to artifacts/ (git-ignored). Run scripts/ensure-browser.sh first.
# Extra arguments go to `node --test` (e.g. a test file, or --test-name-pattern=copilot).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p jivachat-server
target_dir="$(cargo metadata --format-version 1 --no-deps |
    node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')"
export JIVA_SERVER_BIN="$target_dir/debug/jivachat-server"

cd tests/browser
if [ "$#" -eq 0 ]; then
    set -- ./*.test.js
fi
# One file at a time: each starts a browser and a server, and the machine may have 2 cores.
node --test --test-concurrency=1 "$@"
