#!/usr/bin/env bash
# Runs every fuzz target of the `fuzz/` crate for a bounded time and fails on any finding.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 20)
#
# Installs cargo-fuzz if it is missing. cargo-fuzz needs nightly compiler flags; on the stable
# toolchain RUSTC_BOOTSTRAP=1 allows them. The targets are built once (release, with debug
# assertions and overflow checks) without a sanitizer by default: the code under test forbids
# `unsafe`, so AddressSanitizer would mostly slow the build; set FUZZ_SANITIZER=address to use it.
# Each target starts from its committed seeds (fuzz/seeds/<target>) and writes what it finds new
# to fuzz/corpus/<target> (ignored by git); a crash or failed check is saved under
# fuzz/artifacts/<target>/ and reproduced with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> artifacts/<target>/<file>
# What each target asserts: docs/RELIABILITY.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${1:-20}"
SANITIZER="${FUZZ_SANITIZER:-none}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

started=$(date +%s)
cargo fuzz build --sanitizer "$SANITIZER"
echo "fuzz: built every target in $(( $(date +%s) - started )) s" >&2

failed=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${SECONDS_PER_TARGET} s" >&2
    if ! cargo fuzz run --sanitizer "$SANITIZER" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done

if (( ${#failed[@]} > 0 )); then
    echo "fuzz: FAILED: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: every target ran ${SECONDS_PER_TARGET} s without a finding ($(( $(date +%s) - started )) s in all)" >&2
