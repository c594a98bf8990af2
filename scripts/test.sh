#!/usr/bin/env bash
# Every check and every test of the workspace, on a fresh machine or not.
# Installs what it needs first (targets, wasmtime, iproute2; QEMU through
# examples/firmware/run.sh), then runs:
# fmt, clippy, rustdoc, the no_std cross builds, the workspace tests, a
# `cargo publish` dry run, a check with the declared rust-version, the
# docs as docs.rs builds them, the core's tests on wasm32-wasip1 under wasmtime, and the firmware
# images under QEMU (Cortex-M3 with the Stellaris NIC, RISC-V with virtio-net).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing prerequisites"
missing=()
command -v python3 >/dev/null || missing+=(python3 python3-pip)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
command -v wrk >/dev/null || missing+=(wrk)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if ((${#missing[@]})); then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
rustup component add rustfmt clippy >/dev/null
rustup target add thumbv7em-none-eabihf thumbv7m-none-eabi riscv32imac-unknown-none-elf wasm32-wasip1 \
    x86_64-apple-darwin >/dev/null
if ! python3 -c 'import wasmtime' 2>/dev/null; then
    python3 -m pip install --quiet wasmtime 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages wasmtime
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, warnings denied)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "rustdoc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

step "no_std builds of the core"
for target in thumbv7em-none-eabihf riscv32imac-unknown-none-elf wasm32-wasip1; do
    cargo build -p socketserver-core --target "$target"
done
if cargo tree -p socketserver-core --target thumbv7em-none-eabihf -e normal --prefix none |
    grep -Eq '^(std|alloc) '; then
    echo "std or alloc in the core's dependency tree" >&2
    exit 1
fi

step "no_std build of the smoltcp backend and of the facade as firmware uses it"
cargo build -p socketserver-smoltcp --target thumbv7em-none-eabihf
cargo build -p socketserver --no-default-features --features smoltcp --target thumbv7em-none-eabihf
# A handler crate as a firmware author writes it (tests/new_user.rs serves it on std and smoltcp).
cargo build -p no-std-handler --target thumbv7em-none-eabihf

# Linux waits on epoll directly; other systems take the `polling` path.
step "the std backend's non-Linux path (cargo clippy for x86_64-apple-darwin)"
cargo clippy -p socketserver-std --target x86_64-apple-darwin -- -D warnings

# Not --all-features: the core's `defmt` feature needs a firmware logger to link.
step "workspace tests (features std and smoltcp)"
cargo test --workspace --features std,smoltcp

# Packages every published crate and builds each from its tarball, the
# unpublished ones standing in for crates.io (needs the crates.io index).
# A fresh clone is clean; uncommitted work is packaged as it is.
step "cargo publish --dry-run --workspace"
dirty=()
[ -z "$(git status --porcelain 2>/dev/null)" ] || dirty=(--allow-dirty)
cargo publish --dry-run --workspace "${dirty[@]}"

# rust-version is a promise to users: check with that very toolchain.
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
step "cargo +$msrv check (the declared rust-version; installs it if missing)"
rustup toolchain install "$msrv" --profile minimal >/dev/null
cargo +"$msrv" check --workspace --all-targets --all-features

# The docs as docs.rs builds them: nightly rustdoc, --cfg docsrs and each
# crate's [package.metadata.docs.rs] features. Nothing else compiles the
# cfg_attr(docsrs, ...) lines that label feature-gated items.
step "rustdoc as docs.rs runs it (nightly, --cfg docsrs, warnings denied)"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
for crate in socketserver socketserver-std socketserver-smoltcp; do
    RUSTDOCFLAGS="-D warnings --cfg docsrs" cargo +nightly doc --no-deps -p "$crate" --all-features
done
RUSTDOCFLAGS="-D warnings --cfg docsrs" cargo +nightly doc --no-deps -p socketserver-core --features std,defmt

step "fuzz: fmt and clippy (fuzz/, nightly)"
rustup component add --toolchain nightly clippy >/dev/null
(cd fuzz && cargo fmt --check && cargo +nightly clippy --all-targets -- -D warnings)

step "fuzzing the core: 30 s per cargo-fuzz target (installs cargo-fuzz if missing)"
bash fuzz/run.sh 30

step "benchmarks: quick smoke run of every workload (figures not checked)"
cargo run --release -p socketserver-bench -- --quick --strict

step "core tests on wasm32-wasip1 under wasmtime"
cargo test -p socketserver-core --target wasm32-wasip1

# The firmware is a workspace of its own; each board's folder names its target.
# run.sh installs each board's QEMU (qemu-system-arm, qemu-system-misc) and target.
step "firmware images under QEMU, size overhead over the bare images (both boards)"
bash examples/firmware/run.sh

step "firmware: fmt and clippy (examples/firmware: shared code and each board)"
(cd examples/firmware && cargo fmt --all --check)
(cd examples/firmware/boards/lm3s6965evb &&
    cargo clippy --release -p socketserver-firmware -p firmware-lm3s6965evb -- -D warnings)
(cd examples/firmware/boards/riscv-virt &&
    cargo clippy --release -p socketserver-firmware -p firmware-riscv-virt -- -D warnings)

# serve.sh runs a NIC image under QEMU with host forwards on 127.0.0.1.
step "firmware on the NIC: the host's own clients through QEMU's user-mode network"
python3 examples/firmware/test_nic.py
python3 examples/firmware/test_nic.py --bare
python3 examples/firmware/test_nic.py --board riscv-virt
python3 examples/firmware/test_nic.py --board riscv-virt --bare

# Needs root, as the TAP tests above: it fails, loudly, without it.
step "firmware on the NIC over a tap device in a private network namespace"
python3 examples/firmware/test_nic.py --tap
python3 examples/firmware/test_nic.py --board riscv-virt --tap
