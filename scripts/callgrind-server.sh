# Sourced by scripts/callgrind.sh and scripts/callgrind-replay.sh: the release server under
# valgrind's callgrind, every limit off, on the address ADDR; OUT holds its outputs.
#   callgrind_start NAME DIR   starts "$SERVER" on data directory DIR, writing
#                              $OUT/callgrind.NAME.out and $OUT/server-NAME.log, and waits
#                              (at most 60 s) until /readyz answers
#   callgrind_stop             a clean shutdown (SIGTERM), so callgrind writes its counts
# The caller's EXIT trap kills a server left running (SERVER_PID).

SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; true' EXIT

callgrind_start() {
    local name=$1 dir=$2
    rm -f "$OUT/callgrind.$name.out"
    env JIVA_MAX_SOCKETS=0 JIVA_MAX_SOCKETS_PER_IP=0 JIVA_HANDSHAKES_PER_IP_PER_SEC=0 \
        JIVA_MESSAGES_PER_SEC=0 JIVA_COPILOT_QUESTIONS_PER_MIN=0 JIVA_IDLE_TIMEOUT_SECS=0 \
        taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$name.out" \
        "$SERVER" --listen "$ADDR" --data-dir "$dir" --log warn >"$OUT/server-$name.log" 2>&1 &
    SERVER_PID=$!
    local ready=
    for _ in $(seq 600); do
        if curl -sf "http://$ADDR/readyz" >/dev/null 2>&1; then ready=1; break; fi
        sleep 0.1
    done
    [ -n "$ready" ] || { echo "server under valgrind did not become ready; see $OUT/server-$name.log" >&2; exit 1; }
}

callgrind_stop() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
