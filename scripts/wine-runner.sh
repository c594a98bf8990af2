#!/usr/bin/env bash
# Cargo's runner for x86_64-pc-windows-gnu (.cargo/config.toml): runs a
# Windows program under Wine, so that `cargo test` and `cargo run
# --target x86_64-pc-windows-gnu` work on Linux.
#
# The Wine prefix lives under the target directory (target/wine-prefix,
# about 700 MB), made once (about 11 s) with the bcryptprimitives.dll
# stand-in that Rust programs need on Wine 8.0 (scripts/wine/processprng.c,
# built with mingw). Needs wine64 and gcc-mingw-w64-x86-64, which
# scripts/test.sh installs; without them it fails, loudly.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
mkdir -p "$target"
export WINEPREFIX=${SOCKETSERVER_WINEPREFIX:-$(cd "$target" && pwd)/wine-prefix}
export WINEDEBUG=${WINEDEBUG:--all}
# No Mono or Gecko download prompts: these programs need neither.
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}

for tool in wine wineboot wineserver x86_64-w64-mingw32-gcc; do
    if ! command -v "$tool" >/dev/null; then
        echo "wine-runner: $tool not found; install wine64, wine and gcc-mingw-w64-x86-64" \
            "(scripts/test.sh does)" >&2
        exit 127
    fi
done

ready=$WINEPREFIX/.socketserver-ready
if [ ! -e "$ready" ]; then
    # One preparation at a time: cargo may start several runners at once.
    exec 9>"$WINEPREFIX.lock"
    flock 9
    if [ ! -e "$ready" ]; then
        echo "wine-runner: preparing the Wine prefix $WINEPREFIX" >&2
        wineboot --init >/dev/null 2>&1
        wineserver --wait
        dll=$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll
        x86_64-w64-mingw32-gcc -O2 -shared -s -o "$dll" "$here/wine/processprng.c"
        touch "$ready"
    fi
    exec 9>&-
fi

exec wine "$@"
