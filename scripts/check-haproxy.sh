#!/usr/bin/env bash
# Runs deploy/haproxy.cfg for real on loopback in front of two JivaChat processes (SQLite each;
# a third configured node is left absent) and checks what the cluster relies on the balancer
# for (docs/CLUSTER.md):
#   1. /readyz health checks: the two nodes UP, the absent one DOWN;
#   2. WebSockets through it (store workload: every message acknowledged by the echo);
#   3. round robin: both nodes took sockets;
#   4. X-Forwarded-For: with --trust-forwarded-for and 50 sockets per IP per node, 200 sockets
#      from 4 source addresses all open (the nodes see 4 clients), while 200 from one address
#      do not (the nodes see 1 client, not the balancer);
#   5. a node stopped is taken out: checks mark it DOWN and new sockets all go to the other;
#   6. WebSocket timeouts: with the nodes' pings off, a silent socket outlives `timeout client`
#      (30 s) through the balancer, as `timeout tunnel` (1 h) governs it after the upgrade; the
#      control, the same file with `timeout tunnel 3s`, cuts every silent socket.
# Needs haproxy (Debian: apt-get install haproxy). Loopback only; exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-debug}
SERVER=target/$PROFILE/jivachat-server
BENCH=target/$PROFILE/jivachat-bench
LB=127.0.0.1:${LB_PORT:-3140}
N1=127.0.0.1:3141 N2=127.0.0.1:3142 N3=127.0.0.1:3143 STATS=127.0.0.1:3149
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

command -v haproxy >/dev/null || { echo "check-haproxy: haproxy is not installed" >&2; exit 2; }
if [ "$PROFILE" = release ]; then
    cargo build --release -p jivachat-server -p jivachat-bench >&2
else
    cargo build -p jivachat-server -p jivachat-bench >&2
fi

fail() { echo "check-haproxy: FAILED: $*" >&2; exit 1; }
ok() { echo "check-haproxy: ok: $*"; }

start_node() { # start_node ADDR DIR
    # Pings off (idle timeout 0), so that a silent socket is silent end to end (check 6).
    env JIVA_MAX_SOCKETS_PER_IP=50 JIVA_HANDSHAKES_PER_IP_PER_SEC=0 JIVA_MESSAGES_PER_SEC=0 \
        JIVA_IDLE_TIMEOUT_SECS=0 \
        "$SERVER" --listen "$1" --data-dir "$2" --trust-forwarded-for --log warn \
        >>"$WORK/nodes.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do curl -sf "http://$1/readyz" >/dev/null && return 0; sleep 0.05; done
    fail "node $1 did not start (see $WORK/nodes.log)"
}
start_node "$N1" "$WORK/n1"; NODE1_PID=${PIDS[-1]}
start_node "$N2" "$WORK/n2"; NODE2_PID=${PIDS[-1]}

# The repository's file, unchanged, plus a stats page for this check only.
cat >"$WORK/stats.cfg" <<CFG
listen stats
    bind $STATS
    stats enable
    stats uri /stats
CFG
JIVA_LB_BIND=$LB JIVA_NODE1=$N1 JIVA_NODE2=$N2 JIVA_NODE3=$N3 \
    haproxy -db -n 4000 -f deploy/haproxy.cfg -f "$WORK/stats.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)

# status NODE: UP / DOWN / … from the stats CSV (field 18); sessions NODE: total (field 8).
stat_field() { curl -s "http://$STATS/stats;csv" | awk -F, -v s="$1" -v f="$2" '$1=="nodes" && $2==s {print $f}'; }
wait_status() { # wait_status NODE WANT
    for _ in $(seq 100); do
        [ "$(stat_field "$1" 18)" = "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 is $(stat_field "$1" 18), expected $2"
}
wait_status node1 UP; wait_status node2 UP; wait_status node3 DOWN
ok "health checks on /readyz: node1 UP, node2 UP, node3 (nothing listening) DOWN"

curl -sf "http://$LB/readyz" >/dev/null || fail "/readyz through the balancer"
ok "/readyz through the balancer answers 200"

json() { python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())[sys.argv[1]])' "$1"; }
store=$("$BENCH" store --server "$LB" --chats 20 --window 4 --duration 2 | sed -n 1p)
acked=$(json stored_msgs_per_s <<<"$store"); errors=$(json error_frames <<<"$store")
python3 -c "import sys; sys.exit(0 if float('$acked') > 0 and int('$errors') == 0 else 1)" ||
    fail "WebSocket store workload through the balancer: $store"
ok "WebSockets through the balancer: $acked messages/s acknowledged, $errors error frames"
s1=$(stat_field node1 8); s2=$(stat_field node2 8)
[ "${s1:-0}" -gt 0 ] && [ "${s2:-0}" -gt 0 ] || fail "round robin: node1 $s1, node2 $s2 sessions"
ok "round robin: node1 took $s1 sessions, node2 $s2"

idle_failed() { # idle_failed SOURCES: how many of 200 sockets were refused
    local out; out=$("$BENCH" idle --server "$LB" --connections 200 --sources "$1" --hold 0.5 | sed -n 1p)
    echo "sources $1: $out" >>"$WORK/idle.log"
    json failed <<<"$out"
}
f4=$(idle_failed 4)
[ "$f4" = 0 ] || fail "200 sockets from 4 addresses: $f4 refused: $(cat "$WORK/idle.log")"
f1=$(idle_failed 1)
[ "$f1" -gt 0 ] || fail "200 sockets from 1 address were all accepted: X-Forwarded-For not in use?"
ok "X-Forwarded-For: 200 sockets from 4 addresses all open; from 1 address $f1 refused (per-IP limit 50 per node)"

kill "$NODE2_PID"
wait_status node2 DOWN
before=$(stat_field node2 8)
store=$("$BENCH" store --server "$LB" --chats 10 --window 4 --duration 1 | sed -n 1p)
[ "$(json error_frames <<<"$store")" = 0 ] || fail "store after node2 stopped: $store"
[ "$(stat_field node2 8)" = "$before" ] || fail "node2 got sockets after it was marked DOWN"
ok "node2 stopped: marked DOWN, every new socket went to node1"

# idle_cut LB HOLD: how many of 10 silent sockets were cut while held HOLD seconds (plus 2).
idle_cut() { "$BENCH" idle --server "$1" --connections 10 --sources 1 --hold "$2" | sed -n 1p | json frames_while_idle; }
cut=$(idle_cut "$LB" 33)
[ "$cut" = 0 ] || fail "$cut of 10 silent sockets were cut within 35 s: is timeout tunnel in effect?"
sed 's/^\( *timeout tunnel\).*/\1 3s/' deploy/haproxy.cfg >"$WORK/short-tunnel.cfg"
grep -q '^ *timeout tunnel 3s$' "$WORK/short-tunnel.cfg" || fail "could not shorten timeout tunnel"
SHORT=127.0.0.1:$((${LB_PORT:-3140} + 8))
JIVA_LB_BIND=$SHORT JIVA_NODE1=$N1 JIVA_NODE2=$N1 JIVA_NODE3=$N1 \
    haproxy -db -n 400 -f "$WORK/short-tunnel.cfg" >"$WORK/haproxy-short.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://$SHORT/readyz" >/dev/null && break; sleep 0.1; done
cut=$(idle_cut "$SHORT" 5)
[ "$cut" = 10 ] || fail "control: with timeout tunnel 3s only $cut of 10 silent sockets were cut"
ok "timeouts: 10 silent sockets lived 35 s through the balancer (timeout client is 30 s); with timeout tunnel 3s all 10 were cut"
echo "check-haproxy: all checks passed"
