#!/usr/bin/env bash
# A soak: the server under a realistic mix for a bounded time, sampled over time.
#
#   scripts/soak.sh DURATION        # e.g. 60s, 30m, 2h (plain seconds too)
#
# Builds jivachat-server and jivachat-bench (debug by default; PROFILE=release for release),
# starts the server on a fresh embedded store (SQLite) with the bench's stand-in copilot as its
# copilot, and runs `jivachat-bench soak` against it for DURATION: WORKERS chats at a time, each
# opening, replaying, sending, a supervisor joining, a reconnect, a refused frame, a copilot
# turn, then closing. Every INTERVAL seconds the server's RSS, descriptors, sockets, threads,
# `jiva_sockets_open`, `jiva_chats_open`, `jiva_chats_registered`, the data directory's size
# and the interval's send-to-echo p50/p99 go to the CSV; at the end the
# samples are drawn to the SVG and a one-line JSON summary and a Markdown row are printed (and
# saved as summary.jsonl / summary.md). The server is stopped with SIGTERM and must exit 0.
# Environment:
#   RESULTS (target/soak) where soak.csv, soak.svg and the summary go
#   PORT (3140) the server's port   COPILOT_PORT (3141) the stand-in copilot's port
#   WORKERS (16)  MESSAGES (20) per chat  PAUSE_MS (100) between messages  INTERVAL (5) s
#   WARMUP (60) s before the summary's "after warm-up" sample   PROFILE (debug) or release
#   SERVER (target/PROFILE/jivachat-server): a copy of a server build to soak, e.g. one per
#   variant so that several soaks can run while the tree changes; SKIP_BUILD=1 builds nothing
#   (the bench is then target/PROFILE/jivachat-bench as it is). The server inherits the
#   environment, so e.g. MALLOC_ARENA_MAX=2 scripts/soak.sh 8m soaks it with that setting.
# The clients all come from 127.0.0.1, so the per-IP socket and handshake limits are off; the
# per-socket and per-agent limits keep their defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

raw=${1:?usage: scripts/soak.sh DURATION (e.g. 60s, 30m, 1h)}
case $raw in
    *h) seconds=$(( ${raw%h} * 3600 )) ;;
    *m) seconds=$(( ${raw%m} * 60 )) ;;
    *s) seconds=${raw%s} ;;
    *[!0-9]*|'') echo "DURATION must look like 60s, 30m, 1h or 90" >&2; exit 2 ;;
    *) seconds=$raw ;;
esac
[ "$seconds" -gt 0 ] || { echo "DURATION must be positive" >&2; exit 2; }

RESULTS=${RESULTS:-target/soak}
PORT=${PORT:-3140}
COPILOT_PORT=${COPILOT_PORT:-3141}
WORKERS=${WORKERS:-16}
MESSAGES=${MESSAGES:-20}
PAUSE_MS=${PAUSE_MS:-100}
INTERVAL=${INTERVAL:-5}
WARMUP=${WARMUP:-60}
PROFILE=${PROFILE:-debug}
mkdir -p "$RESULTS"
work=$(mktemp -d "${TMPDIR:-/tmp}/jivachat-soak.XXXXXX")

if [ -n "${SKIP_BUILD:-}" ]; then
    :
elif [ "$PROFILE" = release ]; then
    cargo build --release -p jivachat-server -p jivachat-bench >&2
else
    cargo build -p jivachat-server -p jivachat-bench >&2
fi
# Copies, so that a build during a long run cannot replace the binaries under it.
cp "${SERVER:-target/$PROFILE/jivachat-server}" "$work/jivachat-server"
cp "target/$PROFILE/jivachat-bench" "$work/"
SERVER=$work/jivachat-server
BENCH=$work/jivachat-bench

server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

env JIVA_MAX_SOCKETS_PER_IP=0 JIVA_HANDSHAKES_PER_IP_PER_SEC=0 \
    COPILOT_ENDPOINT="http://127.0.0.1:$COPILOT_PORT/" \
    "$SERVER" --listen "127.0.0.1:$PORT" --data-dir "$work/data" --log warn \
    >"$RESULTS/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { echo "the server exited; see $RESULTS/server.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "the server is not ready; see $RESULTS/server.log" >&2; exit 1; }

echo "soak: $seconds s, $WORKERS workers, $PROFILE build, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$BENCH" --header soak --server "127.0.0.1:$PORT" --server-pid "$server_pid" \
    --copilot-listen "127.0.0.1:$COPILOT_PORT" --duration "$seconds" --interval "$INTERVAL" \
    --warmup "$WARMUP" --workers "$WORKERS" --messages "$MESSAGES" --pause-ms "$PAUSE_MS" \
    --data-dir "$work/data" --csv "$RESULTS/soak.csv" --svg "$RESULTS/soak.svg" >"$work/out" 2>"$RESULTS/bench.log"
grep '^{' "$work/out" >"$RESULTS/summary.jsonl"
grep '^|' "$work/out" >"$RESULTS/summary.md"
cat "$work/out"

kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=
[ "$status" -eq 0 ] || { echo "the server exited with $status after SIGTERM" >&2; exit 1; }
echo "soak: done; $RESULTS/soak.csv, $RESULTS/soak.svg" >&2
