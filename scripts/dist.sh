#!/usr/bin/env bash
# The release binary as shipped: built with line tables, then split into a stripped binary
# (dist/berth, what images and packages carry) and its debug file (dist/berth.debug, kept for
# symbolising crash reports: gdb, addr2line and `eu-stack` find it through the binary's
# .gnu_debuglink). Prints both sizes.
#
#   scripts/dist.sh            # cargo build --release, then dist/
set -euo pipefail
cd "$(dirname "$0")/.."
# With cargo-auditable (installed by .ci/install.sh), the binary carries its crate list, so
# scanners and SBOMs of the image see every Rust dependency.
if cargo auditable --version >/dev/null 2>&1; then
    cargo auditable build --release --locked -p berth
else
    echo "dist.sh: cargo-auditable not installed; the binary carries no dependency list" >&2
    cargo build --release --locked -p berth
fi
mkdir -p dist
cp "${CARGO_TARGET_DIR:-target}/release/berth" dist/berth
objcopy --only-keep-debug dist/berth dist/berth.debug
objcopy --strip-debug --add-gnu-debuglink=dist/berth.debug dist/berth
chmod -x dist/berth.debug
for f in dist/berth dist/berth.debug; do
    printf '%-18s %6d MiB (%d MiB gzipped)\n' "$f" $(($(stat -c %s "$f") >> 20)) $(($(gzip -c "$f" | wc -c) >> 20))
done
