#!/usr/bin/env bash
# Rebuilds porthog.bpf.o from porthog.bpf.c. Needs clang (≥ 14) and libbpf's headers
# (Debian: apt-get install clang libbpf-dev). The object is committed: installing porthog needs
# no C toolchain. `build.sh --check` rebuilds into a temporary file and fails if the committed
# object differs (CI runs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
out=porthog.bpf.o
if [[ ${1:-} == --check ]]; then
    out=$(mktemp --suffix=.bpf.o)
    trap 'rm -f "$out"' EXIT
fi
# -g: BTF and CO-RE relocations; no debug line info beyond it, and a fixed source path so the
# object does not depend on where the repository is checked out.
clang -target bpf -O2 -g -fdebug-prefix-map="$PWD"=. -Wall -Werror \
    -c porthog.bpf.c -o "$out"
llvm-strip -g "$out" 2>/dev/null || true
if [[ ${1:-} == --check ]]; then
    if ! cmp -s "$out" porthog.bpf.o; then
        echo "porthog.bpf.o is out of date with porthog.bpf.c: run $(dirname "${BASH_SOURCE[0]}")/build.sh and commit it" >&2
        exit 1
    fi
    echo "porthog.bpf.o is up to date"
fi
