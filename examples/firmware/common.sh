# What run.sh and serve.sh share (sourced, from this directory): the QEMU
# command line, the prerequisites, and the release build.

TARGET=thumbv7m-none-eabi
# -nographic: semihosting output on stdout; target=native: the image's exit
# code becomes QEMU's.
QEMU=(qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb -nographic
    -semihosting-config enable=on,target=native)
# Where the release images are.
out="${CARGO_TARGET_DIR:-target}/$TARGET/release"

# Installs what is missing: qemu-system-arm (apt, as root or through sudo),
# the thumbv7m-none-eabi target and llvm-tools (rustup).
install_prerequisites() {
    if ! command -v qemu-system-arm >/dev/null; then
        local sudo=()
        ((EUID == 0)) || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq qemu-system-arm
    fi
    if command -v rustup >/dev/null; then
        rustup -q target add "$TARGET"
        rustup -q component add llvm-tools
    fi
}

# Panic messages carry source paths; without remapping, the images' sizes
# would depend on where the checkout and the cargo registry are (the
# framework images have more such paths than the bare ones).
relative_paths() {
    local root registry
    root=$(cd ../.. && pwd)
    registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
    printf '%s\n' --config \
        "target.$TARGET.rustflags = ['--remap-path-prefix=$root/=', '--remap-path-prefix=$registry/=']"
}

# cargo build --release with relative source paths, plus the arguments.
build_release() {
    local remap
    mapfile -t remap < <(relative_paths)
    cargo build --release "${remap[@]}" "$@"
}

# QEMU's notes about a stopped board timer and, under -nic none, about the
# board's NIC without a network are noise, not output.
qemu_noise_filter() {
    grep -v -e 'Timer with period zero' -e 'has no peer' >&2
}
