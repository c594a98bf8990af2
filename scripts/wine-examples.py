#!/usr/bin/env python3
"""The Windows builds of the docs' example servers, under Wine, answered by
the docs' Python clients on Linux.

For each of tcp_server, udp_server and threaded_server: `cargo run --target
x86_64-pc-windows-gnu --example NAME -- 127.0.0.1:0` (through the Wine
runner of .cargo/config.toml), wait for `listening on ADDR`, run the
client from tests/py against ADDR over loopback, check its answer, then
send SIGINT (which Wine turns into the console's Ctrl-C) and check that
the server exits with status 0. Every wait is bounded; any failure, Wine
missing included, exits non-zero.
"""

import os
import signal
import subprocess
import sys
import threading
import time

TARGET = "x86_64-pc-windows-gnu"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The first start of Wine in a fresh prefix takes about 10 s.
PATIENCE = 60

CASES = [
    # (example, client, message, the reply line it must print)
    ("tcp_server", "tcp_client.py", "hello wine", lambda m: "Received: " + m.upper()),
    ("udp_server", "udp_client.py", "hello wine", lambda m: "Received: " + m.upper()),
    ("threaded_server", "tcp_client.py", "hello threads", None),
]


def fail(message):
    print("wine-examples: " + message, file=sys.stderr)
    sys.exit(1)


def cargo(*args):
    return ["cargo", *args, "--target", TARGET]


def read_line_within(stream, seconds):
    """The first line of `stream`, or None if none comes in time."""
    line = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    return line[0] if line else None


def threaded_reply_ok(line, message):
    # `Received: Thread-N: {message}` (the line the client sent, so the
    # newline too), from a request thread.
    tag, _, data = line.removeprefix("Received: ").partition(": ")
    return tag.startswith("Thread-") and data == message


def check(example, client, message, expected):
    started = time.monotonic()
    server = subprocess.Popen(
        cargo("run", "--quiet", "--example", example) + ["--", "127.0.0.1:0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line_within(server.stdout, PATIENCE)
        if not line or not line.startswith("listening on "):
            fail(f"{example}: no `listening on ADDR` within {PATIENCE} s (got {line!r})")
        address = line.split()[-1]
        up = time.monotonic() - started
        answer = subprocess.run(
            [sys.executable, os.path.join(ROOT, "tests", "py", client), address, message],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
        if answer.returncode != 0:
            fail(f"{example}: {client} failed: {answer.stderr}")
        lines = [l for l in answer.stdout.splitlines() if l.startswith("Received: ")]
        received = lines[0] if lines else answer.stdout
        ok = received == expected(message) if expected else threaded_reply_ok(received, message)
        if not ok:
            fail(f"{example}: {client} printed {received!r}")
        server.send_signal(signal.SIGINT)
        try:
            status = server.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            fail(f"{example}: still running {PATIENCE} s after SIGINT")
        if status != 0:
            fail(f"{example}: exited with status {status} after SIGINT")
        print(f"{example}: listening after {up:.1f} s, {client}: {received!r}, SIGINT: status 0")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def main():
    examples = [arg for case in CASES for arg in ("--example", case[0])]
    subprocess.run(cargo("build", "--quiet", *examples), cwd=ROOT, check=True)
    for case in CASES:
        check(*case)


if __name__ == "__main__":
    main()
