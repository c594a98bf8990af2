#!/usr/bin/env python3
"""The NIC image against the host's own clients, through `serve.sh`.

usage: test_nic.py [--board lm3s6965evb|riscv-virt] [--tap] [--bare]

Starts serve.sh for the board (default lm3s6965evb; QEMU's user-mode
network, no root; `--tap`: a tap device in a private network namespace, as
root), then: the docs' tcp_client.py and
udp_client.py unchanged, 100 sequential connections, 8 concurrent clients
(the backlog, and a ninth refused), 1 MiB echoed intact through EchoLines, a verify_request
refusal, a client reset mid-request reported by handle_error while the next
client is served, and SIGTERM ending serve.sh with status 0. `--bare` runs
the same against the bare smoltcp twin. Every wait has a deadline.
"""

import hashlib
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nic_harness import (  # noqa: E402
    IO_TIMEOUT,
    ROOT,
    Serve,
    board_args,
    connect,
    echo_bulk,
    enter_netns,
    lines_payload,
    read_line,
    read_to_eof,
)

# verify_request refuses client ports from here on (src/nic.rs).
REFUSED_PORTS = range(61000, 65536)


def docs_client(serve, name, addr, *words):
    """Runs a docs client unchanged (in the namespace, with --tap)."""
    command = [sys.executable, os.path.join(ROOT, "tests", "py", name), f"{addr[0]}:{addr[1]}", *words]
    if serve.netns is not None:
        command = ["nsenter", "-t", str(serve.netns), "-n", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3 * IO_TIMEOUT)
    assert done.returncode == 0, f"{name} failed: {done.stderr}"
    return done.stdout


def test_docs_tcp_client(serve):
    out = docs_client(serve, "tcp_client.py", serve.tcp, "hello", "world")
    assert "Received: HELLO WORLD" in out, out


def test_docs_udp_client(serve):
    out = docs_client(serve, "udp_client.py", serve.udp, "hello", "world")
    assert "Received: HELLO WORLD" in out, out


def upper_once(addr, text):
    with connect(addr) as sock:
        sock.sendall(text.encode() + b"\n")
        return read_to_eof(sock)


def test_100_sequential_connections(serve):
    for i in range(100):
        reply = upper_once(serve.tcp, f"request {i}")
        assert reply == f"REQUEST {i}".encode(), f"connection {i}: {reply!r}"


def test_8_concurrent_clients(serve):
    # An echo client keeps the (one-request-at-a-time) server busy while
    # eight clients connect and send: the backlog must hold all of them.
    hold = connect(serve.echo)
    socks = []
    try:
        ping(hold)
        for i in range(8):
            sock = connect(serve.tcp)
            socks.append(sock)
            sock.sendall(f"client {i}\n".encode())
            # A round trip through QEMU after the connect: QEMU has taken
            # the connection from its own listen queue (it holds two) and
            # passed it to the image.
            ping(hold)
        # A ninth finds no listening socket: reset, as the backlog's docs
        # say (over QEMU's forward, which accepted it, as an EOF).
        try:
            ninth = connect(serve.tcp)
        except ConnectionRefusedError:
            pass
        else:
            ninth.sendall(b"client 8\n")
            assert recv_or_reset(ninth) == b"", "a ninth client was taken"
        hold.shutdown(socket.SHUT_WR)
        assert read_to_eof(hold) == b""
        for i, sock in enumerate(socks):
            reply = read_to_eof(sock)
            assert reply == f"CLIENT {i}".encode(), f"client {i}: {reply!r}"
            # The server lingers until the client closes too.
            sock.close()
    finally:
        hold.close()
        for sock in socks:
            sock.close()


def ping(sock):
    sock.sendall(b"ping\n")
    assert read_line(sock)[0] == b"ping\n"


def recv_or_reset(sock):
    with sock:
        try:
            return read_to_eof(sock)
        except ConnectionResetError:
            return b""


def test_1mib_echoed_intact(serve):
    payload = lines_payload(1 << 20, seed=17)
    back, took = echo_bulk(serve.echo, payload)
    assert len(back) == len(payload), f"{len(back)} bytes back of {len(payload)}"
    assert hashlib.sha256(back).digest() == hashlib.sha256(payload).digest(), "the echo differs"
    print(f"    1 MiB in {took:.2f} s ({len(payload) / took / 1e6:.1f} MB/s)")


def bound_in(ports):
    """A TCP socket bound to a free port of `ports`."""
    for port in ports:
        sock = socket.socket()
        try:
            sock.bind(("0.0.0.0", port))
            return sock
        except OSError:
            sock.close()
    raise AssertionError("no free port to bind")


def test_verify_request_refuses(serve):
    sock = bound_in(REFUSED_PORTS)
    port = sock.getsockname()[1]
    sock.settimeout(IO_TIMEOUT)
    with sock:
        sock.connect(serve.tcp)
        sock.sendall(b"let me in\n")
        reply = recv_or_reset(sock)
    assert reply == b"", f"a refused client got {reply!r}"
    serve.expect(rf"^verify_request refuses \S+:{port}$")
    assert upper_once(serve.tcp, "still serving") == b"STILL SERVING"


def test_reset_mid_request_reported(serve):
    first = connect(serve.echo)
    port = first.getsockname()[1]
    with first:
        # One segment: its echoed line proves that the client is being
        # served and that QEMU has taken the half line too (a reset that
        # overtakes data in QEMU's socket reaches the image as a FIN).
        first.sendall(b"first\nhalf a li")
        assert read_line(first)[0] == b"first\n"
        with connect(serve.echo) as second:
            second.sendall(b"next\n")
            second.shutdown(socket.SHUT_WR)
            # Linger 0: close sends a reset.
            first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            first.close()
            assert read_to_eof(second) == b"next\n"
    serve.expect(rf"^handle_error: \S+:{port}: ")


TESTS = [
    test_docs_tcp_client,
    test_docs_udp_client,
    test_100_sequential_connections,
    test_8_concurrent_clients,
    test_1mib_echoed_intact,
    test_verify_request_refuses,
    test_reset_mid_request_reported,
]


def main():
    args = board_args(sys.argv[1:])
    if args is None:
        sys.exit(__doc__.splitlines()[2])
    if "--tap" in args and os.geteuid() != 0:
        sys.exit(
            "test_nic.py --tap: FAILED, needs root (a network namespace and a tap device; "
            "CI runs it as root)"
        )
    start = time.monotonic()
    passed = 0
    with Serve(*args) as serve:
        print(f"serve.sh {' '.join(args)}: {serve.tcp} {serve.echo} {serve.udp}", flush=True)
        if serve.netns is not None:
            enter_netns(serve.netns)
        for test in TESTS:
            began = time.monotonic()
            test(serve)
            passed += 1
            print(f"  ok: {test.__name__[5:]} ({time.monotonic() - began:.2f} s)", flush=True)
        status = serve.stop()
        assert status == 0, f"serve.sh exited with {status} on SIGTERM"
        assert serve.seen[-1] == "stopped", f"the image did not say it stopped: {serve.seen}"
        passed += 1
        print("  ok: SIGTERM stops the image, serve.sh exits 0")
        # Only what the tests provoked.
        reports = [l for l in serve.seen if l.startswith(("handle_error", "verify_request"))]
        assert len(reports) == 2, f"unexpected reports: {reports}"
        passed += 1
        print("  ok: no error reports but the two provoked")
    print(f"all {passed} NIC tests passed ({time.monotonic() - start:.1f} s)")


if __name__ == "__main__":
    main()
