#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 20 s each) on the stable toolchain, seeded
# from seeds/; exits non-zero on the first crash, leak or hang (libFuzzer's -timeout).
#   usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds=${1:-20}
shift || true
if ! command -v cargo-fuzz >/dev/null; then
    cargo install --locked cargo-fuzz@0.13.2
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer); RUSTC_BOOTSTRAP lets stable take them.
export RUSTC_BOOTSTRAP=1
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build
mkdir -p logs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "==> fuzz $t for ${seconds}s"
    if ! cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        >"logs/$t.log" 2>&1; then
        tail -n 40 "logs/$t.log" >&2
        echo "fuzz target $t failed: crash input in fuzz/artifacts/$t/, log in fuzz/logs/$t.log" >&2
        exit 1
    fi
    grep -E "DONE" "logs/$t.log" | tail -n 1 || true
done
echo "fuzzed ${#targets[@]} targets for ${seconds}s each: no crash"
