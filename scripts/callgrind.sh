#!/usr/bin/env bash
# Instructions the server executes per delivered message, counted by valgrind's callgrind: a
# figure that does not depend on how busy the machine is (unlike wall-clock throughput).
#
#   scripts/callgrind.sh            # 100 chats × 10 sockets × 100 messages per chat
#
# Two runs of the release server under `valgrind --tool=callgrind`, each with a fresh data
# directory and the same 1,000 sockets (jivachat-bench fanout, window 32 per sender):
#   - baseline: 0 messages (start-up, 1,000 handshakes and empty replays, idle, shutdown);
#   - measured: MESSAGES messages per chat, every one stored and echoed to the chat's sockets.
# (measured − baseline) / deliveries is the figure; the top functions of the measured run by
# inclusive and by self cost follow, each as (measured − baseline) / deliveries. Environment:
#   CHATS (100) SOCKETS (10) MESSAGES (100 per chat) WINDOW (32)
#   PORT (3140)  OUT (target/callgrind): callgrind.{base,run}.out, annotate-*.txt, result.json,
#                per-function.json (cost per delivery by function)
#   TOP (30)     functions listed
#   ANALYSE_ONLY=1 reads the outputs already in OUT again (no build, no runs)
#   SERVER (target/release/jivachat-server): a copy of a server build to measure, e.g. one
#                per commit so that runs can go on while the tree changes; SKIP_BUILD=1 then,
#                and COMMIT names what was built (result.json; HEAD by default)
set -euo pipefail
cd "$(dirname "$0")/.."

CHATS=${CHATS:-100}
SOCKETS=${SOCKETS:-10}
MESSAGES=${MESSAGES:-100}
WINDOW=${WINDOW:-32}
PORT=${PORT:-3140}
OUT=${OUT:-target/callgrind}
TOP=${TOP:-30}
ADDR=127.0.0.1:$PORT
SERVER=${SERVER:-target/release/jivachat-server}
BENCH=target/release/jivachat-bench
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

[ -n "${ANALYSE_ONLY:-}${SKIP_BUILD:-}" ] || cargo build --release -p jivachat-server -p jivachat-bench >&2

# shellcheck source=scripts/callgrind-server.sh
. scripts/callgrind-server.sh

one() { # one NAME MESSAGES_PER_CHAT : a server under callgrind, one fan-out, a clean shutdown
    local name=$1 messages=$2 dir=$OUT/data-$1
    rm -rf "$dir"
    callgrind_start "$name" "$dir"
    # Every sender stops after `messages`; the run ends when all deliveries arrived.
    taskset -c 1 "$BENCH" fanout --server "$ADDR" --chats "$CHATS" --sockets "$SOCKETS" \
        --senders 1 --window "$WINDOW" --max-messages "$messages" --duration 300 --warmup 0 \
        --drain 120 --settle 5 --connect-concurrency 32 >"$OUT/bench-$name.txt"
    callgrind_stop
}

if [ -z "${ANALYSE_ONLY:-}" ]; then
    one base 0
    one run "$MESSAGES"
fi

python3 - "$OUT" "$CHATS" "$SOCKETS" "$MESSAGES" "${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}" <<'EOF'
import json, sys
out, chats, sockets, messages, commit = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
def total(name):
    for line in open(f"{out}/callgrind.{name}.out"):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no totals in callgrind.{name}.out")
bench = json.loads(open(f"{out}/bench-run.txt").readline())
base, run = total("base"), total("run")
deliveries = bench["deliveries"]
stored = bench["messages_sent"]
bad = {k: bench[k] for k in ("lost", "duplicated", "reordered", "order_mismatch", "error_frames")}
result = {
    "commit": commit, "chats": chats, "sockets_per_chat": sockets, "messages_per_chat": messages,
    "messages_stored": stored, "deliveries": deliveries,
    "instructions_baseline": base, "instructions_run": run,
    "instructions_per_delivery": round((run - base) / max(deliveries, 1)),
    "instructions_per_stored_message": round((run - base) / max(stored, 1)),
    **bad,
}
json.dump(result, open(f"{out}/result.json", "w"), indent=1)
print(json.dumps(result))
print(f"instructions per delivery: {result['instructions_per_delivery']:,} "
      f"(per stored message, 1 → {sockets} sockets: {result['instructions_per_stored_message']:,}); "
      f"baseline {base:,}, run {run:,}, {deliveries:,} deliveries of {stored:,} messages; "
      f"lost/dup/reordered {bad['lost']}/{bad['duplicated']}/{bad['reordered']}")
if deliveries != stored * sockets or any(bad.values()):
    raise SystemExit("the run was not clean: the figure is not valid")
EOF

for name in base run; do
    for mode in inclusive self; do
        flag=no; [ "$mode" = inclusive ] && flag=yes
        callgrind_annotate --inclusive="$flag" --auto=no --threshold=100 "$OUT/callgrind.$name.out" \
            >"$OUT/annotate-$name-$mode.txt" 2>/dev/null
    done
done

# Per function: (measured − baseline) / deliveries, what one more delivery costs in it.
python3 - "$OUT" "$TOP" <<'EOF'
import json, re, sys
out, top = sys.argv[1], int(sys.argv[2])
deliveries = json.load(open(f"{out}/result.json"))["deliveries"]
line = re.compile(r"^\s*([0-9,]+) \([ 0-9.]+%\)\s+(.*?)(?: \[[^\]]*\])?$")
def costs(name, mode):
    # A function inlined from several files appears once per file: self costs add up, inclusive
    # costs overlap (one contains the other), so those take the largest.
    agg = (lambda a, b: a + b) if mode == "self" else max
    c, table = {}, False
    for l in open(f"{out}/annotate-{name}-{mode}.txt"):
        if l.startswith("Ir") and "file:function" in l:
            table = True
            continue
        if table and l.startswith("-- "):
            break
        m = line.match(l)
        if table and m:
            fn = m.group(2)
            fn = fn.split(":", 1)[1] if ":" in fn.split(" ", 1)[0] else fn   # drop file:
            c[fn] = agg(c.get(fn, 0), int(m.group(1).replace(",", "")))
    return c
report = {}
for mode in ("self", "inclusive"):
    base, run = costs("base", mode), costs("run", mode)
    delta = sorted(((run.get(f, 0) - base.get(f, 0), f) for f in set(run) | set(base)), reverse=True)
    rows = [(d / deliveries, f) for d, f in delta[:top] if d > 0]
    report[mode] = [{"per_delivery": round(x), "function": f} for x, f in rows]
    print(f"== top {top} functions by {mode} cost per delivery ((measured − baseline) / {deliveries:,})")
    for x, f in rows:
        print(f"{x:10,.0f}  {f[:150]}")
# Where one stored message's instructions go (inclusive costs may overlap: not a partition).
result = json.load(open(f"{out}/result.json"))
messages = result["messages_stored"]
inc_b, inc_r = costs("base", "inclusive"), costs("run", "inclusive")
self_b, self_r = costs("base", "self"), costs("run", "self")
def inc(fn):
    return (inc_r.get(fn, 0) - inc_b.get(fn, 0)) / messages
def self_matching(pattern):
    rx = re.compile(pattern)
    return sum(self_r.get(f, 0) - self_b.get(f, 0) for f in set(self_r) | set(self_b) if rx.search(f)) / messages
sink = "<tokio_tungstenite::WebSocketStream<T> as futures_sink::Sink<tungstenite::protocol::message::Message>>::"
parts = [
    ("tokio worker thread (everything async), inclusive", inc("tokio::runtime::scheduler::multi_thread::worker::run")),
    ("  SQLite writer thread (jiva_store_sqlite::writer_loop), inclusive", inc("jiva_store_sqlite::writer_loop")),
    ("  SQLite checkpointer thread (checkpoint_loop), inclusive", inc("jiva_store_sqlite::checkpoint_loop")),
    ("inbound parse (frames::parse_inbound)", inc("jiva_ws::frames::parse_inbound")),
    ("stored-frame encode (frames::stored)", inc("jiva_ws::frames::stored")),
    ("  of which ChatId::canonical (a String per message)", inc("jiva_core::chat::ChatId::canonical")),
    ("Message::user (UUID v7, clones)", inc("jiva_core::message::Message::user")),
    ("append in flight: room look-up + sequencer count (jiva_chat Rooms::begin)", inc("jiva_chat::rooms::Rooms<F>::begin")),
    ("fan-out through the chat's sequencer (jiva_chat Rooms::show)", inc("jiva_chat::rooms::Rooms<F>::show")),
    ("  of which offering the frame to the room's sockets (Room::offer; 0 when inlined)", inc("jiva_chat::rooms::Room<F>::offer")),
    ("    of which queueing + waking each socket's writer (Subscriber::offer)", inc("jiva_chat::rooms::Subscriber<F>::offer")),
    ("socket writes: frame each copy (WebSocketStream start_send)", inc(sink + "start_send")),
    ("socket writes: flush (WebSocketStream poll_flush, incl. the write(2) call)", inc(sink + "poll_flush")),
    ("reading the sender's frame (WebSocketStream poll_next)", inc("<tokio_tungstenite::WebSocketStream<T> as futures_core::stream::Stream>::poll_next")),
    ("append round trip to the writer (SqliteStore::append future)", inc("<jiva_store_sqlite::SqliteStore as jiva_core::store::MessageStore>::append::{{closure}}")),
    ("self: Notify / CancellationToken futures polled in select! loops", self_matching(r"notify|Notified|cancellation_token|WaitForCancellationFuture")),
    ("self: select! fairness RNG (tokio::macros::support::thread_rng_n)", self_matching(r"thread_rng_n")),
    ("self: metrics (registry look-ups per macro call, recording)", self_matching(r"metrics")),
    ("self: tracing (span enter/exit per poll)", self_matching(r"tracing")),
    ("self: malloc/free", self_matching(r"^(_int_malloc|_int_free|malloc|free|realloc|_int_realloc|malloc_consolidate|unlink_chunk.*|__rustc::__rust_(alloc|dealloc|realloc))$")),
    ("self: memcpy/memmove/memset/memcmp", self_matching(r"^__mem(cpy|move|set|cmp)")),
    ("self: SQLite C code", self_matching(r"^(sqlite3|wal|pager|btree|vdbe|balance|pcache|yy_|sqlite)")),
]
total = result["instructions_per_stored_message"]
print(f"== where one stored message goes (1 → {result['sockets_per_chat']} sockets): {total:,} instructions")
for label, x in parts:
    print(f"{x:10,.0f}  {100 * x / total:5.1f}%  {label}")
report["per_message"] = [{"what": label, "instructions": round(x)} for label, x in parts]
json.dump(report, open(f"{out}/per-function.json", "w"), indent=1)
EOF
