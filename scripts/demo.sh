#!/usr/bin/env bash
# Reproduces the README's example: in a throwaway network namespace with a 5,000-port range, a
# client holds every port to one destination (connect() fails with EADDRNOTAVAIL) while another
# churns connections to a second one, leaving TIME_WAIT. Then porthog judges the namespace.
# Needs root; traffic stays on the namespace's loopback; everything is removed on exit.
#   usage: sudo scripts/demo.sh [porthog options, e.g. --json]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -q --release --bins
bin=target/release
ns="porthog-demo-$$"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="40000 44999" net.ipv4.tcp_tw_reuse=0

# Each loadgen prints one JSON line when its sockets exist, then holds them while stdin is open.
hold=$(mktemp -u); mkfifo "$hold"; exec 3<>"$hold"; rm "$hold"
start() {
    ip netns exec "$ns" "$bin/porthog-loadgen" "$@" <&3 >"/tmp/$ns.$#" &
    pids+=($!)
    until [[ -s /tmp/$ns.$# ]]; do sleep 0.05; done
    rm -f "/tmp/$ns.$#"
}
start serve --listen 127.0.0.1:5432 --listen 127.0.0.1:8080
start connect --to 127.0.0.1:5432 --until-fail
start connect --to 127.0.0.1:8080 --count 3000 --close
"$bin/porthog" --netns "$ns" "$@" || true
