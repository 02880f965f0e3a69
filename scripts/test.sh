#!/usr/bin/env bash
# The one command that runs every JivaChat test on a fresh machine.
#
# It installs what the tests need, skipping whatever is already there (so reruns are quick):
#   - moto's DynamoDB-compatible server (PyPI `moto[server]`), which the DynamoDB tests start
#     on 127.0.0.1 themselves;
#   - redis-server (Debian's package), which the jiva-bus-redis tests start on 127.0.0.1;
# then runs the whole workspace's tests: unit tests, integration tests against real servers on
# loopback, end-to-end tests over real WebSockets, and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-moto.sh
scripts/ensure-redis.sh

cargo test --workspace --all-features

# The built-in chat page in a real browser: Debian's Chromium (installed if missing) driven by
# playwright-core against the server binary.
scripts/ensure-browser.sh
scripts/test-browser.sh
