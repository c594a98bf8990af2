#!/usr/bin/env bash
# Runs every cargo-fuzz target of the core for SECONDS each (default 30),
# installing cargo-fuzz first if it is missing; fails on the first crash,
# leaving the input that crashed under fuzz/artifacts/TARGET/.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Needs the nightly toolchain (cargo-fuzz builds with sanitizers).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-30}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# One build for all targets, timed: the first compiles every dependency
# with sanitizer instrumentation.
start=$SECONDS
cargo +nightly fuzz build
echo "fuzz build: $((SECONDS - start)) s"

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "==> fuzzing $target for $seconds s"
    # -max_total_time bounds the run; libFuzzer exits non-zero on a crash, a
    # leak, a timeout (-timeout per input) or running out of memory.
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzzing: no crash in ${#targets[@]} targets"
