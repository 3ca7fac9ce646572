#!/usr/bin/env bash
# Overhead of `porthog trace` under connection churn on loopback (issue 4's benchmark).
# For each round, a fresh network namespace (range 1024-65535, tcp_tw_reuse=1) with
# `porthog-loadgen serve` on 4 ports and 2 `churn` processes (connect + close at once, each
# ending in TIME_WAIT) for SECONDS; once without porthog, once with `porthog trace --json`
# running. Prints the load's connect() rate, the ratio, porthog's CPU during the load and the
# events it lost. Needs root and release builds:
#   cargo build --release --bins --example churn && sudo scripts/bench-trace.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-10}
rounds=${2:-3}
target=${CARGO_TARGET_DIR:-target}/release
porthog=$target/porthog
loadgen=$target/porthog-loadgen
churn=$target/examples/churn
for bin in "$porthog" "$loadgen" "$churn"; do
    [[ -x $bin ]] || { echo "missing $bin: cargo build --release --bins --example churn" >&2; exit 2; }
done
ticks=$(getconf CLK_TCK)
ns=porthog-bench-trace-$$
server_pid=
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT

# One round: prints "RATE" (connections/s of both churn processes together).
load() {
    local out1 out2
    out1=$(mktemp) out2=$(mktemp)
    ip netns exec "$ns" "$churn" --seconds "$seconds" 127.0.0.1:7070 127.0.0.1:7071 >"$out1" &
    local a=$!
    ip netns exec "$ns" "$churn" --seconds "$seconds" 127.0.0.1:7072 127.0.0.1:7073 >"$out2" &
    local b=$!
    wait "$a" "$b"
    python3 -c "import json,sys; print(round(sum(json.load(open(f))['per_second'] for f in sys.argv[1:])))" "$out1" "$out2"
    rm -f "$out1" "$out2"
}

fresh_namespace() {
    cleanup
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" \
        net.ipv4.tcp_tw_reuse=1 net.ipv4.tcp_max_tw_buckets=2000000
    # serve holds its sockets until stdin closes: give it a pipe that stays open.
    exec {hold}< <(sleep $((seconds * 3 + 60)))
    ip netns exec "$ns" "$loadgen" serve --listen 127.0.0.1:7070 --listen 127.0.0.1:7071 \
        --listen 127.0.0.1:7072 --listen 127.0.0.1:7073 <&"$hold" >/dev/null &
    server_pid=$!
    exec {hold}<&-
    sleep 0.3
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "round  without porthog  with porthog trace  ratio  porthog CPU  lost events  connections traced"
for round in $(seq 1 "$rounds"); do
    fresh_namespace
    base=$(load)

    fresh_namespace
    err=$(mktemp) json=$(mktemp)
    "$porthog" trace --json --netns "$ns" >"$json" 2>"$err" &
    tracer=$!
    until grep -q "porthog: tracing" "$err"; do
        kill -0 "$tracer" 2>/dev/null || { cat "$err" >&2; exit 1; }
        sleep 0.05
    done
    t0=$(cpu_ticks "$tracer")
    start=$(date +%s.%N)
    traced=$(load)
    t1=$(cpu_ticks "$tracer")
    wall=$(python3 -c "import time; print(time.time() - $start)")
    kill -INT "$tracer"
    wait "$tracer" || true
    python3 - "$json" "$round" "$base" "$traced" "$t0" "$t1" "$ticks" "$wall" <<'PY'
import json, sys
path, rnd, base, traced, t0, t1, ticks, wall = sys.argv[1:]
summary = [json.loads(l) for l in open(path) if '"type":"summary"' in l][-1]
cpu = (int(t1) - int(t0)) / int(ticks) / float(wall) * 100
conns = sum(c["count"] for c in summary["new_connections"])
print(f"{rnd:>5}  {int(base):>13}/s  {int(traced):>16}/s  {int(traced)/int(base):5.2f}  {cpu:9.0f} %  {summary['lost_events']:>11}  {conns:>18}")
PY
    rm -f "$err" "$json"
done
