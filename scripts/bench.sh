#!/usr/bin/env bash
# Reproduces the figures of docs/BENCHMARKS.md on one machine, loopback only.
#
#   scripts/bench.sh [all|fanout|sweep|idle|connect|store|durability|copilot|dynamodb]...
#
# The server is pinned to core 0 (taskset -c 0) and the generator to core 1 (taskset -c 1).
# Every workload runs RUNS times (default 3); each run appends one JSON line to
# $OUT/<workload>.jsonl and prints a Markdown row; the summary at the end gives the median and
# the min–max of the headline figures. Environment:
#   PORT (3130)  server port       OUT (target/bench)  results     RUNS (3)  runs per figure
#   NICE (0)     niceness of server and generator (e.g. -10 on a machine shared with builds)
#   MOTO_PORT (5005)  port of the local DynamoDB-compatible server (moto) for `dynamodb`
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-3130}
OUT=${OUT:-target/bench}
RUNS=${RUNS:-3}
NICE=${NICE:-0}
MOTO_PORT=${MOTO_PORT:-5005}
ADDR=127.0.0.1:$PORT
SERVER=target/release/jivachat-server
BENCH=target/release/jivachat-bench
WORK=$OUT/work
mkdir -p "$OUT" "$WORK"

# 10,000 idle sockets need 10,000+ descriptors in the generator and in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release -p jivachat-server -p jivachat-bench >&2

SERVER_PID=
start_server() { # start_server DATA_DIR [VAR=value]...
    local dir=$1; shift
    # Limits off: the benchmarks measure the transport, from few source addresses.
    env JIVA_MAX_SOCKETS=0 JIVA_MAX_SOCKETS_PER_IP=0 JIVA_HANDSHAKES_PER_IP_PER_SEC=0 \
        JIVA_MESSAGES_PER_SEC=0 JIVA_COPILOT_QUESTIONS_PER_MIN=0 JIVA_IDLE_TIMEOUT_SECS=0 \
        "$@" nice -n "$NICE" taskset -c 0 "$SERVER" --listen "$ADDR" --data-dir "$dir" --log warn \
        >>"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        curl -sf "http://$ADDR/readyz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "server did not become ready; see $OUT/server.log" >&2
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

bench() { # bench NAME ARGS... : one run, JSON to $OUT/NAME.jsonl, the row to stdout
    local name=$1; shift
    echo "# uptime: $(uptime)" >&2
    nice -n "$NICE" taskset -c 1 "$BENCH" "$@" >"$WORK/last.txt"
    head -n 1 "$WORK/last.txt" >>"$OUT/$name.jsonl"
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

w_fanout() {
    : >"$OUT/fanout-max.jsonl"; : >"$OUT/fanout-half.jsonl"
    start_server "$(fresh fanout)"
    for _ in $(seq "$RUNS"); do
        bench fanout-max fanout --server "$ADDR" --chats 100 --sockets 10 --senders 1 --window 32 \
            --duration 10 --warmup 2 --server-pid "$SERVER_PID"
    done
    # Half of the goal's 100,000 deliveries/s: 5,000 messages/s × 10 sockets.
    for _ in $(seq "$RUNS"); do
        bench fanout-half fanout --server "$ADDR" --chats 100 --sockets 10 --senders 1 --rate 5000 \
            --duration 10 --warmup 2 --server-pid "$SERVER_PID"
    done
    stop_server
    summary fanout-max deliveries_per_s latency.p50_ms latency.p99_ms lost duplicated reordered order_mismatch server_cpu bench_cpu
    summary fanout-half deliveries_per_s latency.p50_ms latency.p90_ms latency.p99_ms latency.max_ms lost duplicated reordered server_cpu
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

w_idle() {
    : >"$OUT/idle.jsonl"
    for _ in $(seq "$RUNS"); do
        start_server "$(fresh idle)"   # a fresh server each time: RSS is measured from its start
        bench idle idle --server "$ADDR" --connections 10000 --sources 4 --hold 10 \
            --server-pid "$SERVER_PID"
        stop_server
    done
    summary idle server_kib_per_conn server_rss_kib_before server_rss_kib_open failed
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
[ ${#targets[@]} -eq 0 ] && targets=(all)
for t in "${targets[@]}"; do
    case $t in
        all) for w in fanout idle connect store durability copilot sweep dynamodb; do "w_$w"; done ;;
        fanout|sweep|idle|connect|store|durability|copilot|dynamodb) "w_$t" ;;
        *) echo "unknown workload $t" >&2; exit 2 ;;
    esac
done
