#!/usr/bin/env python3
"""The NIC image against its bare smoltcp twin, on the same emulated NIC.

usage: bench_nic.py [--board lm3s6965evb|riscv-virt] [--rounds N] [--tap] [--control]

Starts both images (serve.sh and serve.sh --bare) side by side and measures
each, in alternating order, N rounds (default 9):
  rtt   round trip of a 16-byte line through EchoLines on one connection
        (median of 500);
  conn  a whole UpperOnce request: connect, send, read the reply, close
        (median of 100);
  bulk  2 MiB of lines echoed through EchoLines while they are sent (MB/s,
        median of 3).
Prints each round, then the medians and the framework/bare ratios (medians
of the per-round ratios; above 1 means the framework image is faster).
--control compares two copies of the bare image instead: how far noise
alone moves the ratios on this machine. --board picks the board (default
lm3s6965evb).
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nic_harness import (  # noqa: E402
    Serve,
    board_args,
    connect,
    echo_bulk,
    enter_netns,
    lines_payload,
    read_line,
    read_to_eof,
)

RTT_COUNT = 500
CONN_COUNT = 100
BULK_BYTES = 2 << 20
BULK_RUNS = 3


def rtt(serve):
    with connect(serve.echo) as sock:
        line = b"x" * 15 + b"\n"
        times = []
        for _ in range(RTT_COUNT):
            start = time.perf_counter()
            sock.sendall(line)
            assert read_line(sock)[0] == line
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def conn(serve):
    times = []
    for i in range(CONN_COUNT):
        start = time.perf_counter()
        with connect(serve.tcp) as sock:
            sock.sendall(b"hello %d\n" % i)
            assert read_to_eof(sock) == b"HELLO %d" % i
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def bulk(serve, payload):
    rates = []
    for _ in range(BULK_RUNS):
        back, took = echo_bulk(serve.echo, payload)
        assert back == payload, "the echo differs"
        rates.append(len(payload) / took / 1e6)
    return statistics.median(rates)


def main():
    args = sys.argv[1:]
    rounds = 9
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i : i + 2]
    args = board_args(args, flags=("--tap", "--control"))
    if args is None:
        sys.exit(__doc__.splitlines()[2])
    tap = "--tap" in args
    control = "--control" in args
    payload = lines_payload(BULK_BYTES, seed=14)
    # --tap: each image in a namespace of its own, entered in turn.
    extra = [arg for arg in args if arg != "--control"]
    first, second = (("nic_bare", ["--bare"]), ("nic_bare'", ["--bare"])) if control else (
        ("nic", []),
        ("nic_bare", ["--bare"]),
    )
    IMAGES = (first[0], second[0])
    results = {image: {"rtt": [], "conn": [], "bulk": []} for image in IMAGES}
    with Serve(*first[1], *extra) as fw, Serve(*second[1], *extra) as bare:
        servers = dict(zip(IMAGES, (fw, bare)))
        print(f"{'round':>5} {'image':>9} {'rtt us':>8} {'conn us':>8} {'bulk MB/s':>10}")
        measures = {"rtt": rtt, "conn": conn, "bulk": lambda serve: bulk(serve, payload)}
        for n in range(rounds):
            order = IMAGES if n % 2 == 0 else IMAGES[::-1]
            # Each measure of both images back to back: slow drift of the
            # machine's load moves both alike.
            for key, measure in measures.items():
                for image in order:
                    serve = servers[image]
                    if serve.netns is not None:
                        enter_netns(serve.netns)
                    results[image][key].append(measure(serve))
            for image in order:
                r = results[image]
                print(
                    f"{n + 1:>5} {image:>9} {r['rtt'][-1]:>8.0f} {r['conn'][-1]:>8.0f} "
                    f"{r['bulk'][-1]:>10.2f}",
                    flush=True,
                )
        for serve in (fw, bare):
            assert serve.stop() == 0, "an image did not stop cleanly"
    f, b = results[IMAGES[0]], results[IMAGES[1]]
    ratios = {
        # Latencies: bare / framework, so that above 1 is faster here too.
        "rtt": statistics.median(x / y for x, y in zip(b["rtt"], f["rtt"])),
        "conn": statistics.median(x / y for x, y in zip(b["conn"], f["conn"])),
        "bulk": statistics.median(x / y for x, y in zip(f["bulk"], b["bulk"])),
    }
    board = args[args.index("--board") + 1] if "--board" in args else "lm3s6965evb"
    print(f"\n{board}: medians of {rounds} rounds (QEMU {'tap' if tap else 'user-mode'} network)")
    print(f"| measure | {IMAGES[0]} | {IMAGES[1]} | ratio |")
    print("|---|---:|---:|---:|")
    units = {"rtt": "us", "conn": "us", "bulk": "MB/s"}
    for key in ("rtt", "conn", "bulk"):
        print(
            f"| {key} | {statistics.median(f[key]):.2f} {units[key]} | "
            f"{statistics.median(b[key]):.2f} {units[key]} | {ratios[key]:.2f}x |"
        )


if __name__ == "__main__":
    main()
