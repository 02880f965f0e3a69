#!/usr/bin/env bash
# Instructions the server executes per connect with a history replay, counted by valgrind's
# callgrind (the replay side of scripts/callgrind.sh; instruction counts do not depend on how busy
# the machine is).
#
#   scripts/callgrind-replay.sh        # a 1,000-message history, 10 then 110 connects, 4 at once
#
# One chat is seeded with HISTORY messages through jiva-store-sqlite (`jivachat-bench seed`, as
# `scripts/bench.sh replay` does; OTHER messages in OTHER_CHATS other chats beside it), then two
# runs of the release server under `valgrind --tool=callgrind`, each on a fresh copy of the seeded
# data directory: BASE connects, then RUN connects (`jivachat-bench connect --history HISTORY
# --concurrency CONCURRENCY`). (run − base) / (RUN − BASE) is the figure per connect; divided by
# HISTORY, per history frame. Environment:
#   HISTORY (1000) BASE (10) RUN (110) CONCURRENCY (4: under valgrind, 16 at once time out) OTHER (0) OTHER_CHATS (1)
#   PORT (3150) OUT (target/callgrind-replay) TOP (30)
#   SERVER (target/release/jivachat-server), SKIP_BUILD=1, COMMIT: as in scripts/callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."

HISTORY=${HISTORY:-1000}
BASE=${BASE:-10}
RUN=${RUN:-110}
CONCURRENCY=${CONCURRENCY:-4}
OTHER=${OTHER:-0}
OTHER_CHATS=${OTHER_CHATS:-1}
PORT=${PORT:-3150}
OUT=${OUT:-target/callgrind-replay}
TOP=${TOP:-30}
ADDR=127.0.0.1:$PORT
SERVER=${SERVER:-target/release/jivachat-server}
BENCH=${BENCH:-target/release/jivachat-bench}
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p jivachat-server -p jivachat-bench >&2

# shellcheck source=scripts/callgrind-server.sh
. scripts/callgrind-server.sh

rm -rf "$OUT/seed"
taskset -c 1 "$BENCH" seed --data-dir "$OUT/seed" --messages "$OTHER" --chats "$OTHER_CHATS" \
    --history "$HISTORY" | head -n 1 >"$OUT/seed.json"
AGENT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["agent"])' "$OUT/seed.json")

one() { # one NAME CONNECTS : a server under callgrind on a copy of the seed, CONNECTS replays
    local name=$1 connects=$2 dir=$OUT/data-$1
    rm -rf "$dir"
    cp -a "$OUT/seed" "$dir"
    callgrind_start "$name" "$dir"
    taskset -c 1 "$BENCH" connect --server "$ADDR" --agent "$AGENT" --history "$HISTORY" \
        --connections "$connects" --concurrency "$CONCURRENCY" >"$OUT/bench-$name.txt"
    callgrind_stop
}

one base "$BASE"
one run "$RUN"

python3 - "$OUT" "$HISTORY" "$BASE" "$RUN" "${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}" <<'EOF'
import json, sys
out, history, base_n, run_n, commit = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
def total(name):
    for line in open(f"{out}/callgrind.{name}.out"):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no totals in callgrind.{name}.out")
failed = sum(json.loads(open(f"{out}/bench-{n}.txt").readline()).get("failed", 0) for n in ("base", "run"))
base, run = total("base"), total("run")
connects = run_n - base_n
result = {
    "commit": commit, "history": history, "connects": connects,
    "instructions_base": base, "instructions_run": run,
    "instructions_per_connect": round((run - base) / connects),
    "instructions_per_history_frame": round((run - base) / connects / history),
    "failed": failed,
}
json.dump(result, open(f"{out}/result.json", "w"), indent=1)
print(json.dumps(result))
if failed:
    raise SystemExit("some connects failed: the figure is not valid")
EOF

for name in base run; do
    for mode in inclusive self; do
        flag=no; [ "$mode" = inclusive ] && flag=yes
        callgrind_annotate --inclusive="$flag" --auto=no --threshold=100 "$OUT/callgrind.$name.out" \
            >"$OUT/annotate-$name-$mode.txt" 2>/dev/null
    done
done

# Per function: (run − base) / connects / HISTORY, what one more history frame costs in it.
python3 - "$OUT" "$TOP" "$HISTORY" <<'EOF'
import json, re, sys
out, top, history = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
frames = json.load(open(f"{out}/result.json"))["connects"] * history
line = re.compile(r"^\s*([0-9,]+) \([ 0-9.]+%\)\s+(.*?)(?: \[[^\]]*\])?$")
def costs(name, mode):
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
            fn = fn.split(":", 1)[1] if ":" in fn.split(" ", 1)[0] else fn
            c[fn] = agg(c.get(fn, 0), int(m.group(1).replace(",", "")))
    return c
report = {}
for mode in ("self", "inclusive"):
    base, run = costs("base", mode), costs("run", mode)
    delta = sorted(((run.get(f, 0) - base.get(f, 0), f) for f in set(run) | set(base)), reverse=True)
    rows = [(d / frames, f) for d, f in delta[:top] if d > 0]
    report[mode] = [{"per_history_frame": round(x), "function": f} for x, f in rows]
    print(f"== top {top} functions by {mode} cost per history frame")
    for x, f in rows:
        print(f"{x:>10,.0f}  {f[:150]}")
json.dump(report, open(f"{out}/per-function.json", "w"), indent=1)
EOF
