#!/usr/bin/env python3
"""Cargo runner for wasm32-wasip1: runs a WASI binary under the wasmtime
Python package (`pip install wasmtime`) and exits with its status."""
import sys

import wasmtime


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: wasmtime-run.py MODULE.wasm [ARGS...]", file=sys.stderr)
        return 2
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, sys.argv[1])
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    wasi = wasmtime.WasiConfig()
    wasi.argv = sys.argv[1:]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.inherit_env()
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    try:
        start(store)
    except wasmtime.ExitTrap as exit_trap:
        return exit_trap.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
