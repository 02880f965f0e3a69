#!/usr/bin/env bash
# Makes sure `redis-server` (Redis 7 or Valkey) is on PATH for the jiva-bus-redis integration
# tests, which start their own server on a free loopback port.
#
# Idempotent and quick on rerun: apt-get runs (`update`, then `install redis-server`) only when
# `redis-server` is missing. Works as root (or with sudo) on a fresh Debian machine (Debian's
# packages must be reachable for the first run).
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if command -v redis-server >/dev/null 2>&1; then
    echo "ensure-redis: $(redis-server --version | cut -d' ' -f1-3) already installed"
    exit 0
fi

echo "ensure-redis: installing redis-server from Debian's packages" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server </dev/null
# The package starts a system service; the tests start their own servers and need none.
as_root systemctl disable --now redis-server >/dev/null 2>&1 || true

command -v redis-server >/dev/null 2>&1 || {
    echo "ensure-redis: redis-server still missing after apt-get install" >&2
    exit 1
}
echo "ensure-redis: $(redis-server --version | cut -d' ' -f1-3) ready"
