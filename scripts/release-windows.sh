#!/usr/bin/env bash
# Builds the release porthog.exe for x86_64-pc-windows-gnu (issue 10) and writes it with its
# SHA-256 to dist/:  dist/porthog.exe  dist/porthog.exe.sha256
# Needs the Rust target and the mingw-w64 linker:
#   rustup target add x86_64-pc-windows-gnu && apt-get install mingw-w64
#   usage: scripts/release-windows.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=x86_64-pc-windows-gnu
# Where cargo builds: ./target unless CARGO_TARGET_DIR says otherwise.
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --target "$target" -p porthog
mkdir -p dist
cp "$target_dir/$target/release/porthog.exe" dist/porthog.exe
(cd dist && sha256sum porthog.exe >porthog.exe.sha256)
ls -l dist/porthog.exe
cat dist/porthog.exe.sha256
