#!/usr/bin/env bash
# Cost of `porthog serve --all-netns` (issue 9's exporter benchmark): NAMESPACES fresh network
# namespaces, each with one `porthog-loadgen serve` and CONNECTIONS held loopback connections
# (2 x CONNECTIONS + 1 sockets each), and the exporter collecting every INTERVAL seconds for
# SECONDS, scraped once per interval. Prints the exporter's average CPU over those SECONDS (% of
# one core, from /proc/PID/stat), its peak and final RSS, the collection time it reports, then
# the latency of SCRAPES back-to-back GET /metrics (curl's time_total: p50, p99, max). With
# SERVE_LOG=FILE the exporter's stderr is kept there (with PORTHOG_TIMINGS=1: each namespace's
# decision and where its time went, each collection's total). Needs root and release builds:
#   cargo build --release -p porthog --bins && sudo scripts/bench-serve.sh [NAMESPACES] [CONNECTIONS] [SECONDS] [INTERVAL] [SCRAPES]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
namespaces=${1:-5}
# NS_PREFIX names the namespaces (engineers sharing a machine put their own name in it).
prefix=${NS_PREFIX:-porthog-bench-serve}-$$
connections=${2:-2000}
seconds=${3:-120}
interval=${4:-15}
scrapes=${5:-1000}
target=${CARGO_TARGET_DIR:-target}/release
porthog=$target/porthog
loadgen=$target/porthog-loadgen
for bin in "$porthog" "$loadgen"; do
    [[ -x $bin ]] || { echo "missing $bin: cargo build --release -p porthog --bins" >&2; exit 2; }
done
dir=$(mktemp -d /tmp/porthog-bench-serve.XXXXXX)
pids=()
names=()
serve_pid=
cleanup() {
    [[ -n $serve_pid ]] && kill "$serve_pid" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for ns in "${names[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    # Kept however the script ends (an early exit too): what the exporter said.
    [[ -n ${SERVE_LOG:-} && -f $dir/serve.err ]] && cp "$dir/serve.err" "$SERVE_LOG"
    rm -rf "$dir"
}
trap cleanup EXIT
mkfifo "$dir/hold"

# Every loadgen reads the fifo: it holds its sockets until this script closes fd 9 (or dies).
start() { # NS OUTFILE ARGS...
    local ns=$1 out=$2
    shift 2
    ip netns exec "$ns" "$loadgen" "$@" <"$dir/hold" >"$out" &
    pids+=($!)
}
ready() { # OUTFILE: waits for loadgen's ready line
    for _ in $(seq 600); do
        [[ -s $1 ]] && { grep -q '"ready":true' "$1" || { cat "$1" >&2; exit 1; }; return; }
        sleep 0.1
    done
    echo "loadgen never got ready: $1" >&2
    exit 1
}
for i in $(seq "$namespaces"); do
    ns=$prefix-$i
    ip netns add "$ns"
    names+=("$ns")
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
    start "$ns" "$dir/server-$i" serve --listen 127.0.0.1:7070
done
exec 9>"$dir/hold"
for i in $(seq "$namespaces"); do ready "$dir/server-$i"; done
for i in $(seq "$namespaces"); do
    start "$prefix-$i" "$dir/client-$i" connect --to 127.0.0.1:7070 --count "$connections"
done
for i in $(seq "$namespaces"); do ready "$dir/client-$i"; done
sockets=$(cat /proc/net/sockstat >/dev/null; for ns in "${names[@]}"; do ip netns exec "$ns" ss -Htan | wc -l; done | paste -sd+ | bc)

port=$(( 20000 + $$ % 20000 ))
"$porthog" serve --all-netns --interval "$interval" --listen "127.0.0.1:$port" 2>"$dir/serve.err" &
serve_pid=$!
for _ in $(seq 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" && break
    sleep 0.1
done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$serve_pid/stat"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$serve_pid/status"; }
# Phase 1, CPU and RSS: scraped once per interval, as a Prometheus would.
cpu0=$(cpu)
t0=$(date +%s.%N)
peak=0
end=$(( $(date +%s) + seconds ))
next_scrape=0
while (( $(date +%s) < end )); do
    if (( $(date +%s) >= next_scrape )); then
        curl -s -o /dev/null "http://127.0.0.1:$port/metrics"
        next_scrape=$(( $(date +%s) + interval ))
    fi
    r=$(rss); (( r > peak )) && peak=$r
    sleep 1
done
cpu1=$(cpu)
t1=$(date +%s.%N)
# Phase 2, latency: SCRAPES back-to-back scrapes (collections keep running meanwhile).
: >"$dir/latency"
for _ in $(seq "$scrapes"); do
    curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/metrics" >>"$dir/latency"
done
r=$(rss); (( r > peak )) && peak=$r
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$serve_pid/status")
body=$(curl -s "http://127.0.0.1:$port/metrics")
duration=$(grep '^porthog_collect_duration_seconds ' <<<"$body" | awk '{print $2}')
seen=$(grep '^porthog_namespaces ' <<<"$body" | awk '{print $2}')
series=$(grep -vc '^#' <<<"$body")
sort -n "$dir/latency" >"$dir/sorted"
n=$(wc -l <"$dir/sorted")
pct() { sed -n "$(( ($1 * n + 99) / 100 ))p" "$dir/sorted"; }
echo "load: $namespaces namespaces x ($connections connections + listener) = $sockets TCP sockets (ss), porthog saw $seen namespaces on the host"
echo "serve --all-netns --interval $interval, measured over $(awk "BEGIN {printf \"%.0f\", $t1 - $t0}") s"
awk -v c="$((cpu1 - cpu0))" -v t="$ticks" -v w="$(awk "BEGIN {print $t1 - $t0}")" \
    'BEGIN {printf "CPU: %.2f %% of one core on average (%.2f s of CPU)\n", 100 * c / t / w, c / t}'
echo "RSS: peak $((peak / 1024)) MiB sampled, VmHWM $((hwm / 1024)) MiB, now $((r / 1024)) MiB"
echo "last collection: ${duration} s; /metrics: $series series, $(wc -c <<<"$body") bytes"
echo "GET /metrics latency over $n scrapes: p50 $(pct 50) s, p99 $(pct 99) s, max $(tail -1 "$dir/sorted") s"
