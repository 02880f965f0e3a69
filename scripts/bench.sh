#!/usr/bin/env bash
# Reproduces the figures of docs/BENCHMARKS.md on one machine, loopback only.
#
#   scripts/bench.sh [issue14|all|fanout|room|idle|handshake|replay|replay1m|sweep|connect|store|durability|copilot|dynamodb]...
#
# The server is pinned to core 0 (taskset -c 0) and the generator to core 1 (taskset -c 1).
# `issue14` (the default) runs issue 14's workloads against JivaChat AND the reference peer
# (bins/jivachat-bench/node-ref, a Node `ws` broadcast server without storage) in the same
# invocation: a fresh server for every run, RUNS runs each, alternating JivaChat and Node.
# Before every run it waits (at most LOAD_WAIT s) until the 1-minute load average is below
# LOAD_MAX; a run started above it is marked `"busy": true` with the load it saw. Results:
#   $RESULTS/results.jsonl  one line per run (peer, workload, run, load, busy, the bench's JSON)
#   $RESULTS/results.csv    the same, headline figures only
#   $RESULTS/results.md     median (min–max) per workload and peer, for docs/BENCHMARKS.md
# Environment:
#   PORT (3130) JivaChat's port   NODE_PORT (3131) the Node peer's port   RUNS (3) runs per figure
#   OUT (target/bench) logs and scratch data   RESULTS (docs/bench) the results files
#   LOAD_MAX (0.5) quiet threshold   LOAD_WAIT (120) seconds to wait for it before each run
#   NICE (0) niceness of server and generator (e.g. -10 on a machine shared with builds)
#   PEERS ("jiva node") which servers the side-by-side workloads run against
#   MOTO_PORT (5005)  port of the local DynamoDB-compatible server (moto) for `dynamodb`
#   SERVER (target/release/jivachat-server) the server binary, e.g. a copy of an older build
#   SKIP_BUILD (unset) set to skip the release build (SERVER and the bench are built already)
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-3130}
NODE_PORT=${NODE_PORT:-3131}
OUT=${OUT:-target/bench}
RESULTS=${RESULTS:-docs/bench}
RUNS=${RUNS:-3}
NICE=${NICE:-0}
LOAD_MAX=${LOAD_MAX:-0.5}
LOAD_WAIT=${LOAD_WAIT:-120}
PEERS=${PEERS:-jiva node}
MOTO_PORT=${MOTO_PORT:-5005}
ADDR=127.0.0.1:$PORT
NODE_ADDR=127.0.0.1:$NODE_PORT
SERVER=${SERVER:-target/release/jivachat-server}
BENCH=target/release/jivachat-bench
NODE_REF=bins/jivachat-bench/node-ref
WORK=$OUT/work
mkdir -p "$OUT" "$WORK" "$RESULTS"

# 10,000 idle sockets need 10,000+ descriptors in the generator and in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p jivachat-server -p jivachat-bench >&2
: >"$RESULTS/results.jsonl"   # each invocation writes its own results

ensure_node_ref() {
    command -v node >/dev/null || { echo "node is not installed (the reference peer needs it)" >&2; return 1; }
    [ -f "$NODE_REF/node_modules/ws/package.json" ] || (cd "$NODE_REF" && npm ci --no-audit --no-fund >&2)
}

SERVER_PID=
start_server() { # start_server DATA_DIR [VAR=value]... : JivaChat on $ADDR
    local dir=$1; shift
    # Limits off: the benchmarks measure the transport, from few source addresses.
    env JIVA_MAX_SOCKETS=0 JIVA_MAX_SOCKETS_PER_IP=0 JIVA_HANDSHAKES_PER_IP_PER_SEC=0 \
        JIVA_MESSAGES_PER_SEC=0 JIVA_COPILOT_QUESTIONS_PER_MIN=0 JIVA_IDLE_TIMEOUT_SECS=0 \
        "$@" nice -n "$NICE" taskset -c 0 "$SERVER" --listen "$ADDR" --data-dir "$dir" --log warn \
        >>"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$ADDR"
}
start_node() { # start_node : the reference peer on $NODE_ADDR
    nice -n "$NICE" taskset -c 0 node "$NODE_REF/server.js" --listen "$NODE_ADDR" \
        >>"$OUT/node.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$NODE_ADDR"
}
wait_ready() {
    for _ in $(seq 200); do
        curl -sf "http://$1/readyz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "server on $1 did not become ready; see $OUT/server.log or $OUT/node.log" >&2
    return 1
}
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap 'stop_server; [ -n "${MOTO_PID:-}" ] && kill "$MOTO_PID" 2>/dev/null; true' EXIT

load1() { cut -d' ' -f1 /proc/loadavg; }
RUN_LOAD= RUN_BUSY= RUN_WAITED=
quiet() { # waits up to LOAD_WAIT s for a 1-minute load average below LOAD_MAX
    local start=$SECONDS
    while awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l >= m) }'; do
        if (( SECONDS - start >= LOAD_WAIT )); then break; fi
        sleep 5
    done
    RUN_LOAD=$(load1)
    RUN_WAITED=$(( SECONDS - start ))
    if awk -v l="$RUN_LOAD" -v m="$LOAD_MAX" 'BEGIN { exit !(l >= m) }'; then
        RUN_BUSY=true
        echo "# busy machine: load $RUN_LOAD after ${RUN_WAITED}s (threshold $LOAD_MAX); the run is marked busy" >&2
    else
        RUN_BUSY=false
    fi
}

record() { # record PEER NAME RUN FILE : one line of results.jsonl from the bench's JSON line
    python3 - "$@" "$RUN_LOAD" "$RUN_BUSY" "$RUN_WAITED" "$(git rev-parse --short HEAD 2>/dev/null)" \
        >>"$RESULTS/results.jsonl" <<'PY'
import json, sys
peer, name, run, path, load, busy, waited, commit = sys.argv[1:9]
result = json.loads(open(path).readline())
print(json.dumps({"peer": peer, "workload": name, "run": int(run), "load_1m": float(load),
                  "busy": busy == "true", "waited_s": int(waited), "commit": commit,
                  "result": result}))
PY
}

side() { # side NAME SEED_DIR BENCH_ARGS... : RUNS fresh-server runs per peer, alternating
    local name=$1 seed=$2; shift 2
    local run peer
    for run in $(seq "$RUNS"); do
        for peer in $PEERS; do
            if [ "$peer" = node ] && [ -n "$seed" ]; then continue; fi   # Node keeps no history
            quiet
            local addr
            if [ "$peer" = node ]; then
                start_node; addr=$NODE_ADDR
            else
                local dir; dir=$(fresh "$name-$run")
                if [ -n "$seed" ]; then cp -a "$seed/." "$dir/"; fi
                start_server "$dir"; addr=$ADDR
            fi
            local args=() a
            for a in "$@"; do a=${a//@ADDR@/$addr}; args+=("${a//@PID@/$SERVER_PID}"); done
            echo "# $name $peer run $run, load $RUN_LOAD: ${args[*]}" >&2
            if nice -n "$NICE" taskset -c 1 "$BENCH" "${args[@]}" >"$WORK/last.txt"; then
                record "$peer" "$name" "$run" "$WORK/last.txt"
                echo "$peer $(tail -n 1 "$WORK/last.txt")"
            else
                echo "# $name $peer run $run FAILED" >&2
            fi
            stop_server
        done
    done
}

bench() { # bench NAME ARGS... : one run, JSON to $OUT/NAME.jsonl, the row to stdout
    local name=$1; shift
    quiet
    echo "# uptime: $(uptime)" >&2
    nice -n "$NICE" taskset -c 1 "$BENCH" "$@" >"$WORK/last.txt"
    head -n 1 "$WORK/last.txt" >>"$OUT/$name.jsonl"
    record jiva "$name" "$(wc -l <"$OUT/$name.jsonl")" "$WORK/last.txt"
    tail -n 1 "$WORK/last.txt"
}

summary() { # summary NAME FIELD... : median (min–max) of dotted JSON fields over the file
    python3 - "$OUT/$1.jsonl" "${@:2}" <<'EOF'
import json, statistics, sys
path, fields = sys.argv[1], sys.argv[2:]
runs = [json.loads(l) for l in open(path) if l.strip()]
def get(v, f):
    for k in f.split('.'):
        v = v.get(k) if isinstance(v, dict) else None
    return v
out = []
for f in fields:
    xs = [x for x in (get(r, f) for r in runs) if isinstance(x, (int, float))]
    if xs:
        out.append(f"{f} {statistics.median(xs):g} ({min(xs):g}–{max(xs):g})")
print(f"{path}: {len(runs)} runs: " + "; ".join(out))
EOF
}

fresh() { rm -rf "$WORK/$1"; echo "$WORK/$1"; }

summarize() { # results.csv and results.md from results.jsonl
    python3 - "$RESULTS" "$LOAD_MAX" <<'EOF'
import csv, json, statistics, sys
results, load_max = sys.argv[1], sys.argv[2]
runs = [json.loads(l) for l in open(f"{results}/results.jsonl") if l.strip()]
def get(v, f):
    for k in f.split('.'):
        v = v.get(k) if isinstance(v, dict) else None
    return v
# workload: [(label, field, goal)]
FIGURES = {
    "fanout-max": [("deliveries/s", "deliveries_per_s", "≥ 2× Node"),
                   ("p99 ms", "latency.p99_ms", ""),
                   ("server CPU (cores)", "server_cpu", "")],
    "fanout-20k": [("deliveries/s", "deliveries_per_s", "20,000 offered"),
                   ("p99 ms", "latency.p99_ms", "≤ 1 ms"),
                   ("p99.9 ms", "latency.p999_ms", "≤ 3 ms"),
                   ("server CPU (cores)", "server_cpu", "")],
    "room-1000": [("server CPU (cores)", "server_cpu", "< Node's"),
                  ("deliveries/s", "deliveries_per_s", "50,000 offered"),
                  ("p99 ms", "latency.p99_ms", "")],
    "idle": [("server KiB per socket", "server_kib_per_conn", "≤ 6 KiB"),
             ("failed", "failed", "0")],
    "handshake": [("handshakes/s", "connects_per_s", "≥ 16,000/s"),
                  ("failed", "failed", "0")],
    "replay": [("connects/s (1,000-message replay)", "connects_per_s", "≥ 500/s"),
               ("p99 ms", "latency.p99_ms", ""),
               ("failed", "failed", "0")],
    "replay-1m": [("connects/s (1,000-message replay, 1M other messages)", "connects_per_s",
                   "≥ 500/s"),
                  ("p99 ms", "latency.p99_ms", ""),
                  ("failed", "failed", "0")],
}
CSV_FIELDS = ["deliveries_per_s", "latency.p50_ms", "latency.p99_ms", "latency.p999_ms",
              "latency.max_ms", "server_cpu", "bench_cpu", "lost", "duplicated", "reordered",
              "order_mismatch", "server_kib_per_conn", "connects_per_s", "stored_msgs_per_s",
              "failed"]
with open(f"{results}/results.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["workload", "peer", "run", "commit", "load_1m", "busy", "waited_s"] + CSV_FIELDS)
    for r in runs:
        w.writerow([r["workload"], r["peer"], r["run"], r["commit"], r["load_1m"], r["busy"],
                    r["waited_s"]] + [get(r["result"], k) for k in CSV_FIELDS])
def fmt(x):
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"
def stat(xs):
    if not xs:
        return None, "—"
    m = statistics.median(xs)
    return m, (f"{fmt(m)} ({fmt(min(xs))}–{fmt(max(xs))})" if len(xs) > 1 else fmt(m))
peers = ["jiva", "node"]
lines = ["| workload | figure | JivaChat | Node `ws` | JivaChat / Node | goal | runs JivaChat/Node (busy) | load 1 min | lost/dup/reordered (all runs) |",
         "|---|---|---|---|---|---|---|---|---|"]
for name, figs in FIGURES.items():
    mine = {p: [r for r in runs if r["workload"] == name and r["peer"] == p] for p in peers}
    if not any(mine.values()):
        continue
    loads = [r["load_1m"] for p in peers for r in mine[p]]
    busy = sum(r["busy"] for p in peers for r in mine[p])
    n = "/".join(str(len(mine[p])) for p in peers)
    errs = "; ".join(
        f"{p} " + "/".join(str(sum(get(r["result"], k) or 0 for r in mine[p]))
                          for k in ("lost", "duplicated", "reordered"))
        for p in peers if mine[p] and get(mine[p][0]["result"], "lost") is not None) or "—"
    for label, field, goal in figs:
        cells, meds = [], []
        for p in peers:
            m, c = stat([x for x in (get(r["result"], field) for r in mine[p])
                         if isinstance(x, (int, float))])
            cells.append(c)
            meds.append(m)
        ratio = f"{meds[0] / meds[1]:.2f}" if meds[0] is not None and meds[1] else "—"
        lines.append(f"| {name} | {label} | {cells[0]} | {cells[1]} | {ratio} | {goal} | {n} ({busy}) | "
                     f"{min(loads):.2f}–{max(loads):.2f} | {errs} |")
lines += ["", f"Median (min–max) over the runs. busy: runs started with the 1-minute load average "
          f"≥ {load_max} (after waiting for it to drop). Commit {runs[0]['commit'] if runs else '?'}."]
open(f"{results}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
}

# Issue 14's workloads, JivaChat and Node side by side (see the header).
w_fanout() {
    # As fast as possible: 100 chats × 10 sockets, one sender per chat, 32 messages in flight.
    side fanout-max "" fanout --server @ADDR@ --chats 100 --sockets 10 --senders 1 --window 32 \
        --duration 10 --warmup 2 --server-pid @PID@
    # 20,000 deliveries/s offered: 2,000 messages/s × 10 sockets (goal: p99 ≤ 1 ms, p99.9 ≤ 3 ms).
    side fanout-20k "" fanout --server @ADDR@ --chats 100 --sockets 10 --senders 1 --rate 2000 \
        --duration 10 --warmup 2 --server-pid @PID@
}

w_room() {
    # One chat of 1,000 sockets, 50 messages/s: the server's CPU (goal: below Node's).
    side room-1000 "" fanout --server @ADDR@ --chats 1 --sockets 1000 --senders 1 --rate 50 \
        --duration 10 --warmup 2 --server-pid @PID@
}

w_idle() {
    # 10,000 idle sockets over 4 source addresses: server memory per socket (goal: ≤ 6 KiB).
    # (100,000 needs more descriptors than this sandbox's hard limit of `ulimit -Hn`.)
    side idle "" idle --server @ADDR@ --connections 10000 --sources 4 --hold 5 --server-pid @PID@
}

w_handshake() {
    # Handshakes per second: connect, upgrade, close; 64 at once (goal: ≥ 16,000/s).
    side handshake "" connect --server @ADDR@ --history 0 --connections 10000 --concurrency 64
}

replay_side() { # replay_side NAME OTHER_MESSAGES OTHER_CHATS : connect + 1,000-message replay
    # 16 at once (goal: ≥ 500 connects/s). JivaChat only: the Node peer keeps no history. The
    # history (and the other chats' messages) is written once through jiva-store-sqlite and
    # copied into each fresh server's data directory.
    local name=$1 messages=$2 chats=$3
    local seed; seed=$(fresh "$name-seed")
    nice -n "$NICE" taskset -c 1 "$BENCH" seed --data-dir "$seed" --messages "$messages" \
        --chats "$chats" --history 1000 | head -n 1 | tee "$OUT/$name-seed.json" >&2
    local agent
    agent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["agent"])' "$OUT/$name-seed.json")
    side "$name" "$seed" connect --server @ADDR@ --agent "$agent" --history 1000 \
        --connections 2000 --concurrency 16
}

w_replay() { replay_side replay 0 1; }

# The same with 1,000,000 other messages in 10,000 other chats (the goal's second half).
w_replay1m() { replay_side replay-1m 1000000 10000; }

w_issue14() {
    ensure_node_ref
    for w in fanout room idle handshake replay replay1m; do "w_$w"; done
}

w_sweep() {
    : >"$OUT/sweep.jsonl"
    start_server "$(fresh sweep)"
    nice -n "$NICE" taskset -c 1 "$BENCH" sweep --server "$ADDR" --chats 100 --sockets 10 \
        --loads 10000,25000,50000,75000,100000,125000 --repeat "$RUNS" --duration 8 --warmup 2 \
        --server-pid "$SERVER_PID" --svg docs/fanout-latency.svg | tee "$WORK/sweep.txt" | grep '^|'
    grep '^{' "$WORK/sweep.txt" >>"$OUT/sweep.jsonl"
    stop_server
}

w_connect() {
    : >"$OUT/connect.jsonl"
    local dir; dir=$(fresh connect)
    # 1,000,000 messages in 10,000 other chats, and the measured chat with 50, written directly
    # through jiva-store-sqlite before the server starts.
    nice -n "$NICE" taskset -c 1 "$BENCH" seed --data-dir "$dir" --messages 1000000 --chats 10000 \
        --history 50 | head -n 1 | tee "$OUT/seed.json"
    local agent
    agent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["agent"])' "$OUT/seed.json")
    start_server "$dir"
    for _ in $(seq "$RUNS"); do
        bench connect connect --server "$ADDR" --agent "$agent" --history 50 --connections 2000 \
            --concurrency 1
    done
    stop_server
    summary connect connects_per_s latency.p50_ms latency.p99_ms latency.max_ms failed
}

w_store() {
    : >"$OUT/store.jsonl"
    start_server "$(fresh store)"
    for _ in $(seq "$RUNS"); do
        bench store store --server "$ADDR" --chats 200 --window 16 --duration 10
    done
    stop_server
    summary store stored_msgs_per_s ack_latency.p50_ms ack_latency.p99_ms error_frames
}

w_durability() {
    : >"$OUT/durability.jsonl"
    local dir; dir=$(fresh durability)
    start_server "$dir"
    nice -n "$NICE" taskset -c 1 "$BENCH" store --server "$ADDR" --chats 200 --window 16 \
        --duration 10 --acked-log "$WORK/acked.log" >"$WORK/store-killed.txt" &
    local load=$!
    sleep 4
    kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    wait "$load" || true
    head -n 1 "$WORK/store-killed.txt" >>"$OUT/durability.jsonl"
    start_server "$dir"
    bench durability verify --server "$ADDR" --acked-log "$WORK/acked.log"
    stop_server
}

w_copilot() {
    : >"$OUT/copilot.jsonl"
    start_server "$(fresh copilot)" COPILOT_ENDPOINT=http://127.0.0.1:3999/
    for _ in $(seq "$RUNS"); do
        bench copilot copilot --server "$ADDR" --copilot-listen 127.0.0.1:3999 --chunks 10000 \
            --interval-us 500
    done
    stop_server
    summary copilot relay_latency.p50_ms relay_latency.p99_ms relay_latency.max_ms chunks_received
}

w_dynamodb() {
    scripts/ensure-moto.sh >&2
    # moto is the database here: give it the generator's core, not the server's.
    taskset -c 1 python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$OUT/moto.log" 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 100); do curl -s "http://127.0.0.1:$MOTO_PORT" >/dev/null 2>&1 && break; sleep 0.1; done
    local env=(JIVA_STORE=dynamodb AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT AWS_REGION=us-east-1
        AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x)
    env "${env[@]}" "$SERVER" create-tables >&2
    : >"$OUT/dynamo-fanout.jsonl"; : >"$OUT/dynamo-store.jsonl"; : >"$OUT/dynamo-connect.jsonl"
    start_server "$(fresh dynamo)" "${env[@]}"
    for _ in $(seq "$RUNS"); do
        bench dynamo-store store --server "$ADDR" --chats 50 --window 4 --duration 10
    done
    for _ in $(seq "$RUNS"); do
        bench dynamo-fanout fanout --server "$ADDR" --chats 10 --sockets 10 --rate 50 \
            --duration 10 --warmup 2 --connect-concurrency 4 --server-pid "$SERVER_PID"
    done
    for _ in $(seq "$RUNS"); do
        bench dynamo-connect connect --server "$ADDR" --fill 50 --history 50 --connections 100 \
            --concurrency 1
    done
    stop_server
    kill "$MOTO_PID" 2>/dev/null || true; MOTO_PID=
    summary dynamo-store stored_msgs_per_s ack_latency.p50_ms ack_latency.p99_ms
    summary dynamo-fanout deliveries_per_s latency.p50_ms latency.p99_ms lost duplicated reordered
    summary dynamo-connect connects_per_s latency.p50_ms latency.p99_ms
}

# `scripts/bench.sh cluster` (alone; not part of `all`): fan-out across three nodes on moto
# sharing chats over a local Redis (docs/CLUSTER.md), the generator's senders on the first node
# and receivers on all three. Nodes on CLUSTER_PORT+1..+3 (CLUSTER_PORT 3160), Redis on
# REDIS_PORT (6391), moto on MOTO_PORT. Needs a server with the Redis bus wired in (`--bus`).
# Runs in a subshell with its own EXIT trap, so that Redis, moto and the nodes are stopped
# however it ends.
w_cluster() (
    if ! "$SERVER" --help | grep -q -- '--bus'; then
        echo "cluster: $SERVER has no --bus flag (the Redis bus is not wired in yet)" >&2
        exit 1
    fi
    local redis_port=${REDIS_PORT:-6391}
    local pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; true' EXIT
    scripts/ensure-redis.sh >&2
    scripts/ensure-moto.sh >&2
    # Redis and moto on the generator's core: the nodes share core 0, as one server does elsewhere.
    taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        >"$OUT/redis.log" 2>&1 &
    pids+=($!)
    taskset -c 1 python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$OUT/moto.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && curl -s "http://127.0.0.1:$MOTO_PORT" >/dev/null 2>&1 && break
        sleep 0.1
    done
    local env=(JIVA_STORE=dynamodb AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT AWS_REGION=us-east-1
        AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x JIVA_BUS=redis
        JIVA_REDIS_URL=redis://127.0.0.1:$redis_port)
    env "${env[@]}" "$SERVER" create-tables >&2
    local nodes=()
    for i in 1 2 3; do
        local addr=127.0.0.1:$((${CLUSTER_PORT:-3160} + i))
        env JIVA_MAX_SOCKETS=0 JIVA_MAX_SOCKETS_PER_IP=0 JIVA_HANDSHAKES_PER_IP_PER_SEC=0 \
            JIVA_MESSAGES_PER_SEC=0 JIVA_IDLE_TIMEOUT_SECS=0 "${env[@]}" \
            nice -n "$NICE" taskset -c 0 "$SERVER" --listen "$addr" --data-dir "$(fresh "cluster-$i")" \
            --log warn >>"$OUT/server.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 200); do curl -sf "http://$addr/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
        curl -sf "http://$addr/readyz" >/dev/null || { echo "node $addr not ready; see $OUT/server.log" >&2; exit 1; }
        nodes+=("$addr")
    done
    : >"$OUT/cluster.jsonl"
    # moto is the store: the same modest load as `dynamodb`'s fan-out (50 messages/s, 10 × 10).
    for _ in $(seq "$RUNS"); do
        bench cluster cluster --servers "$(IFS=,; echo "${nodes[*]}")" --chats 10 --sockets 10 \
            --rate 50 --duration 10 --warmup 2 --connect-concurrency 4
    done
    summary cluster deliveries_per_s latency_sender_node.p50_ms latency_sender_node.p99_ms \
        latency_other_nodes.p50_ms latency_other_nodes.p99_ms lost duplicated reordered \
        seq_reordered seq_gaps order_mismatch
)
if [ $# -eq 1 ] && [ "$1" = cluster ]; then
    w_cluster
    exit
fi

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(issue14)
for t in "${targets[@]}"; do
    case $t in
        all) for w in issue14 connect store durability copilot sweep dynamodb; do "w_$w"; done ;;
        fanout|room|idle|handshake|replay|replay1m) ensure_node_ref; "w_$t" ;;
        issue14|sweep|connect|store|durability|copilot|dynamodb) "w_$t" ;;
        *) echo "unknown workload $t" >&2; exit 2 ;;
    esac
done
summarize
