#!/usr/bin/env python3
"""The NIC image against its bare smoltcp twin, on the same emulated NIC.

usage: bench_nic.py [--rounds N] [--tap]

Starts both images (serve.sh and serve.sh --bare) side by side and measures
each, in alternating order, N rounds (default 5):
  rtt   round trip of a 16-byte line through EchoLines on one connection
        (median of 500);
  conn  a whole UpperOnce request: connect, send, read the reply, close
        (median of 100);
  bulk  4 MiB of lines echoed through EchoLines while they are sent (MB/s).
Prints each round, then the medians and the framework/bare ratios (medians
of the per-round ratios; above 1 means the framework image is faster).
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nic_harness import Serve, connect, echo_bulk, enter_netns, lines_payload, read_line, read_to_eof  # noqa: E402

RTT_COUNT = 500
CONN_COUNT = 100
BULK_BYTES = 4 << 20
IMAGES = ("nic", "nic_bare")


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
    back, took = echo_bulk(serve.echo, payload)
    assert back == payload, "the echo differs"
    return len(payload) / took / 1e6


def main():
    args = sys.argv[1:]
    rounds = 5
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i : i + 2]
    tap = args == ["--tap"]
    if args and not tap:
        sys.exit(__doc__.splitlines()[2])
    payload = lines_payload(BULK_BYTES, seed=14)
    results = {image: {"rtt": [], "conn": [], "bulk": []} for image in IMAGES}
    # --tap: both images in one namespace would need two tap devices and
    # addresses; each gets its own serve.sh namespace, entered in turn.
    extra = ["--tap"] if tap else []
    with Serve(*extra) as fw, Serve("--bare", *extra) as bare:
        servers = dict(zip(IMAGES, (fw, bare)))
        print(f"{'round':>5} {'image':>9} {'rtt us':>8} {'conn us':>8} {'bulk MB/s':>10}")
        for n in range(rounds):
            order = IMAGES if n % 2 == 0 else IMAGES[::-1]
            for image in order:
                serve = servers[image]
                if serve.netns is not None:
                    enter_netns(serve.netns)
                r = results[image]
                r["rtt"].append(rtt(serve))
                r["conn"].append(conn(serve))
                r["bulk"].append(bulk(serve, payload))
                print(
                    f"{n + 1:>5} {image:>9} {r['rtt'][-1]:>8.0f} {r['conn'][-1]:>8.0f} "
                    f"{r['bulk'][-1]:>10.2f}",
                    flush=True,
                )
        for serve in (fw, bare):
            assert serve.stop() == 0, "an image did not stop cleanly"
    f, b = results["nic"], results["nic_bare"]
    ratios = {
        # Latencies: bare / framework, so that above 1 is faster here too.
        "rtt": statistics.median(x / y for x, y in zip(b["rtt"], f["rtt"])),
        "conn": statistics.median(x / y for x, y in zip(b["conn"], f["conn"])),
        "bulk": statistics.median(x / y for x, y in zip(f["bulk"], b["bulk"])),
    }
    print(f"\nmedians of {rounds} rounds (QEMU {'tap' if tap else 'user-mode'} network)")
    print("| measure | nic (framework) | nic_bare | framework/bare |")
    print("|---|---:|---:|---:|")
    units = {"rtt": "us", "conn": "us", "bulk": "MB/s"}
    for key in ("rtt", "conn", "bulk"):
        print(
            f"| {key} | {statistics.median(f[key]):.2f} {units[key]} | "
            f"{statistics.median(b[key]):.2f} {units[key]} | {ratios[key]:.2f}x |"
        )


if __name__ == "__main__":
    main()
