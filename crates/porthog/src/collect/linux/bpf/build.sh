#!/usr/bin/env bash
# Rebuilds porthog.bpf.o from porthog.bpf.c. Needs clang (≥ 14) and libbpf's headers
# (Debian: apt-get install clang libbpf-dev). The object is committed: installing porthog needs
# no C toolchain. `build.sh --check` rebuilds into a temporary file and fails if the committed
# object differs (CI runs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# The object is byte-for-byte reproducible with the same clang major version (the one in
# Debian 12, which built the committed object); another version emits different but equivalent
# code, so --check only compares under this one.
CLANG_MAJOR=14
major=$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)
out=porthog.bpf.o
if [[ ${1:-} == --check && $major != "$CLANG_MAJOR" ]]; then
    echo "clang $major is not clang $CLANG_MAJOR, which built porthog.bpf.o: checking that the source compiles only"
fi
if [[ ${1:-} == --check ]]; then
    out=$(mktemp --suffix=.bpf.o)
    trap 'rm -f "$out"' EXIT
fi
# -g: BTF and CO-RE relocations; no debug line info beyond it, and a fixed source path so the
# object does not depend on where the repository is checked out.
clang -target bpf -O2 -g -fdebug-prefix-map="$PWD"=. -Wall -Werror \
    -c porthog.bpf.c -o "$out"
llvm-strip -g "$out" 2>/dev/null || true
if [[ ${1:-} == --check && $major == "$CLANG_MAJOR" ]]; then
    if ! cmp -s "$out" porthog.bpf.o; then
        echo "porthog.bpf.o is out of date with porthog.bpf.c: run $(dirname "${BASH_SOURCE[0]}")/build.sh and commit it" >&2
        exit 1
    fi
    echo "porthog.bpf.o is up to date"
fi
