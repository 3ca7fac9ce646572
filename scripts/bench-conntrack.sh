#!/usr/bin/env bash
# Cost of reading SNAT pools from conntrack (issue 9's target: 100k entries read and pooled in
# under 0.3 s). Makes a client, a NAT and a sink namespace; the NAT masquerades (the kernel's
# default range) towards the sink, which does not forward and drops everything; the client sends one UDP datagram from
# each of 2 addresses x PORTS source ports to 2 destination ports, so the NAT holds
# 4 x PORTS entries in 2 SNAT pools (UDP timeout raised so they stay). Then RUNS times:
# `porthog --netns NAT --json` (with PORTHOG_TIMINGS: dump, analysis), its wall time, and
# `conntrack -L` as the peer. With BASE=/path/to/an/older/porthog, each run also times that
# binary right after, so a before/after comparison sees the same table and the same load (on a
# busy machine, runs apart in time are not comparable). CPU time (user+sys, from the kernel's
# rusage) is printed next to wall time: it is what contention inflates least.
# Needs root, python3, conntrack, nftables and a release build:
#   cargo build --release -p porthog && sudo [BASE=...] scripts/bench-conntrack.sh [PORTS] [RUNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ports=${1:-25000}
runs=${2:-5}
porthog=${CARGO_TARGET_DIR:-target}/release/porthog
[[ -x $porthog ]] || { echo "missing $porthog: cargo build --release -p porthog" >&2; exit 2; }
# NS_PREFIX names the namespaces (engineers sharing a machine put their own name in it).
prefix=${NS_PREFIX:-porthog-bench-ct}
client=$prefix-client-$$
nat=$prefix-nat-$$
sink=$prefix-sink-$$
cleanup() { for ns in "$client" "$nat" "$sink"; do ip netns del "$ns" 2>/dev/null || true; done; }
trap cleanup EXIT
ip netns add "$client"
ip netns add "$nat"
ip netns add "$sink"
ip link add ct0 netns "$client" type veth peer name ct1 netns "$nat"
ip -n "$client" addr add 10.66.1.2/24 dev ct0
ip -n "$client" addr add 10.66.1.3/24 dev ct0
ip -n "$client" link set ct0 up
ip -n "$client" link set lo up
ip -n "$client" route add default via 10.66.1.1
ip -n "$nat" addr add 10.66.1.1/24 dev ct1
ip -n "$nat" link set ct1 up
ip link add out0 netns "$nat" type veth peer name in0 netns "$sink"
ip -n "$nat" addr add 10.66.0.1/24 dev out0
ip -n "$nat" link set out0 up
ip -n "$sink" addr add 10.66.0.2/24 dev in0
ip -n "$sink" link set in0 up
ip -n "$nat" route add 10.99.0.0/16 via 10.66.0.2
ip netns exec "$nat" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$nat" nft -f - <<'NFT'
table ip porthog_bench { chain post { type nat hook postrouting priority srcnat; oifname "out0" masquerade; }; }
NFT
ip netns exec "$nat" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=600
ip netns exec "$client" python3 - "$ports" <<'PY'
import socket, sys
ports = int(sys.argv[1])
for ip in ("10.66.1.2", "10.66.1.3"):
    for port in range(20000, 20000 + ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, port))
        s.sendto(b"x", ("10.99.0.1", 53))
        s.sendto(b"x", ("10.99.0.1", 54))
        s.close()
PY
entries=$(ip netns exec "$nat" conntrack -C)
echo "conntrack entries in the NAT namespace: $entries (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
# One timed run of binary $1 labelled $2: wall time, CPU time, porthog's own timings, pools.
measure() {
    local start end timings pools cpu
    start=$(date +%s.%N)
    PORTHOG_TIMINGS=1 /usr/bin/time -f "cpu %U %S" "$1" --netns "$nat" --json \
        2>"/tmp/porthog-bench-ct.$$" >/tmp/porthog-bench-ct.json.$$ || true
    end=$(date +%s.%N)
    timings=$(grep -E "conntrack:|analyzed" "/tmp/porthog-bench-ct.$$" | sed 's/^porthog: //' | paste -sd';')
    cpu=$(awk '/^cpu /{printf "%.3f", $2 + $3}' "/tmp/porthog-bench-ct.$$")
    pools=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(' '.join(f\"{p['used']}/{p['capacity']}\" for p in r['pools'] if p['kind']=='snat'))" /tmp/porthog-bench-ct.json.$$)
    printf '  %s: porthog %.3f s wall, %s s CPU (%s; snat pools %s)\n' "$2" \
        "$(echo "$end - $start" | bc)" "$cpu" "$timings" "$pools"
}
for i in $(seq "$runs"); do
    echo "run $i (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    measure "$porthog" this
    if [[ -n ${BASE:-} ]]; then
        measure "$BASE" base
    fi
    start_l=$(date +%s.%N)
    ip netns exec "$nat" conntrack -L >/dev/null 2>&1
    end_l=$(date +%s.%N)
    printf '  conntrack -L %.3f s\n' "$(echo "$end_l - $start_l" | bc)"
done
rm -f "/tmp/porthog-bench-ct.$$" "/tmp/porthog-bench-ct.json.$$"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
