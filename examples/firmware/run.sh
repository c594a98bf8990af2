#!/usr/bin/env bash
# Builds both firmware images, runs them under QEMU (lm3s6965evb, Cortex-M3,
# semihosting), and compares their sizes.
#
# Fails when an image does not exit with success (a failed check, a panic, a
# hang past the timeout), when the bare image links socketserver code beyond
# the in-memory cable, or when the flash ratio framework/bare exceeds its
# 1.15 target (the IPv6 variant's ratio is printed for information only).
#
# Installs what is missing first: qemu-system-arm (apt, as root or through
# sudo), the thumbv7m-none-eabi target and llvm-tools (rustup).
set -euo pipefail
cd "$(dirname "$0")"

TARGET=thumbv7m-none-eabi
MAX_RATIO=1.15
QEMU=(qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb -nographic
    -semihosting-config enable=on,target=native)

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites"
if ! command -v qemu-system-arm >/dev/null; then
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq qemu-system-arm
fi
if command -v rustup >/dev/null; then
    rustup target add "$TARGET" >/dev/null
    rustup component add llvm-tools >/dev/null
fi
host=$(rustc -vV | sed -n 's/^host: //p')
tools="$(rustc --print sysroot)/lib/rustlib/$host/bin"
if [[ -x "$tools/llvm-size" ]]; then
    size_tool="$tools/llvm-size" nm_tool="$tools/llvm-nm"
else
    size_tool=arm-none-eabi-size nm_tool=arm-none-eabi-nm
fi
qemu-system-arm --version | head -n1

# Panic messages carry source paths; without remapping, the images' sizes
# would depend on where the checkout and the cargo registry are (the
# framework image has more such paths than the bare one).
root=$(cd ../.. && pwd)
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
relative_paths=(--config "target.$TARGET.rustflags = ['--remap-path-prefix=$root/=', '--remap-path-prefix=$registry/=']")

step "building the images (release)"
cargo build --release --bins "${relative_paths[@]}"
out="${CARGO_TARGET_DIR:-target}/$TARGET/release"

run_image() {
    local name=$1 status=0
    step "running the $name image under QEMU"
    # QEMU's own note about a stopped board timer is noise, not output.
    timeout 120 "${QEMU[@]}" -kernel "$out/$name" </dev/null \
        2> >(grep -v 'Timer with period zero' >&2) || status=$?
    if ((status != 0)); then
        echo "the $name image failed (exit status $status)" >&2
        exit 1
    fi
}
run_image framework
run_image bare

step "the bare image links no socketserver code but the cable"
if "$nm_tool" -C "$out/bare" | grep -E 'socketserver_(core|smoltcp)(::|\.\.)' |
    grep -vE 'socketserver_smoltcp(::|\.\.)memory(::|\.\.)'; then
    echo "socketserver code in the bare image (above)" >&2
    exit 1
fi
echo "none"

# Prints both images' sizes and their flash ratio; sets `ratio`.
sizes() {
    local dir=$1
    read -r fw_text fw_data fw_bss _ < <("$size_tool" "$dir/framework" | tail -n1)
    read -r bare_text bare_data bare_bss _ < <("$size_tool" "$dir/bare" | tail -n1)
    printf '%-10s %8s %8s %8s %8s %8s\n' image text data bss flash ram
    printf '%-10s %8d %8d %8d %8d %8d\n' \
        framework "$fw_text" "$fw_data" "$fw_bss" $((fw_text + fw_data)) $((fw_data + fw_bss)) \
        bare "$bare_text" "$bare_data" "$bare_bss" $((bare_text + bare_data)) $((bare_data + bare_bss))
    ratio=$(awk -v f=$((fw_text + fw_data)) -v b=$((bare_text + bare_data)) 'BEGIN { printf "%.3f", f / b }')
    echo "flash ratio framework/bare: ${ratio}x (target: at most ${MAX_RATIO}x)"
}

step "sizes with IPv6 in the stack too (informational; images not run)"
ipv6_dir="${CARGO_TARGET_DIR:-target}/ipv6"
CARGO_TARGET_DIR="$ipv6_dir" cargo build --release --bins --features ipv6 "${relative_paths[@]}"
sizes "$ipv6_dir/$TARGET/release"

step "sizes (flash = text + data; RAM = data + bss)"
sizes "$out"
if awk -v r="$ratio" -v m="$MAX_RATIO" 'BEGIN { exit !(r > m) }'; then
    echo "the ratio exceeds the ${MAX_RATIO}x target" >&2
    exit 1
fi
echo "firmware: ok"
