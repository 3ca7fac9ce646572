#!/usr/bin/env bash
# Rebuilds porthog.bpf.o, porthog_signal.bpf.o and porthog_events.bpf.o from their .c files
# (and porthog_common.h, which they share). Needs clang (≥ 14) and libbpf's headers
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
# -g: BTF and CO-RE relocations; no debug line info beyond it, and a fixed source path so the
# object does not depend on where the repository is checked out.
# porthog.bpf.o: the iterators (bpf.rs); porthog_signal.bpf.o: the change signal (signal.rs);
# porthog_events.bpf.o: the TCP state-change events (events.rs). Every *.bpf.c here is built
# (and checked: a source without its committed object fails), each including porthog_common.h.
if [[ ${1:-} == --check && $major != "$CLANG_MAJOR" ]]; then
    echo "clang $major is not clang $CLANG_MAJOR, which built the objects: checking that the sources compile only"
fi
status=0
for src in *.bpf.c; do
    name=${src%.bpf.c}
    out=$name.bpf.o
    if [[ ${1:-} == --check ]]; then
        out=$(mktemp --suffix=.bpf.o)
    fi
    clang -target bpf -O2 -g -fdebug-prefix-map="$PWD"=. -Wall -Werror \
        -c $name.bpf.c -o "$out"
    llvm-strip -g "$out" 2>/dev/null || true
    if [[ ${1:-} == --check ]]; then
        if [[ $major == "$CLANG_MAJOR" ]]; then
            if cmp -s "$out" $name.bpf.o; then
                echo "$name.bpf.o is up to date"
            else
                echo "$name.bpf.o is out of date with $name.bpf.c: run $(dirname "${BASH_SOURCE[0]}")/build.sh and commit it" >&2
                status=1
            fi
        fi
        rm -f "$out"
    fi
done
exit $status
