# What run.sh and serve.sh share (sourced, from this directory): the boards'
# QEMU command lines, the prerequisites, and the release build.

# The boards, one folder each under boards/.
BOARDS=(lm3s6965evb riscv-virt)

# Sets, for board $1: TARGET, QEMU (its command line, without NIC or
# image), QEMU_NIC (the NIC's arguments, given a netdev n0), QEMU_PACKAGE
# (apt), board_dir and out (where its release images are).
#
# lm3s6965evb: -nographic puts semihosting output on stdout; target=native
# makes the image's exit code QEMU's. riscv-virt: -bios none starts the
# image in machine mode at 0x8000_0000; its UART is stdout; the test device
# makes the image's exit code QEMU's.
use_board() {
    case $1 in
    lm3s6965evb)
        TARGET=thumbv7m-none-eabi
        QEMU=(qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb -nographic
            -semihosting-config enable=on,target=native)
        QEMU_NIC=(-net nic,netdev=n0,model=stellaris)
        QEMU_PACKAGE=qemu-system-arm
        ;;
    riscv-virt)
        TARGET=riscv32imac-unknown-none-elf
        QEMU=(qemu-system-riscv32 -machine virt -bios none -nographic -monitor none)
        QEMU_NIC=(-device virtio-net-device,netdev=n0)
        QEMU_PACKAGE=qemu-system-misc
        ;;
    *)
        echo "no board $1 (boards: ${BOARDS[*]})" >&2
        return 1
        ;;
    esac
    board_dir="$PWD/boards/$1"
    out="${CARGO_TARGET_DIR:-$PWD/target}/$TARGET/release"
}

# Installs what is missing for the current board: its QEMU (apt, as root or
# through sudo), its target and llvm-tools (rustup).
install_prerequisites() {
    if ! command -v "${QEMU[0]}" >/dev/null; then
        local sudo=()
        ((EUID == 0)) || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq "$QEMU_PACKAGE"
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

# cargo build --release of the current board, with relative source paths,
# plus the arguments.
build_release() {
    local remap
    mapfile -t remap < <(relative_paths)
    (cd "$board_dir" && cargo build --release "${remap[@]}" "$@")
}

# QEMU's notes about a stopped board timer and, under -nic none, about the
# board's NIC without a network are noise, not output.
qemu_noise_filter() {
    grep -v -e 'Timer with period zero' -e 'has no peer' >&2
}
