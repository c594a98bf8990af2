"""What test_nic.py and bench_nic.py share: serve.sh run as a child, read
line by line with deadlines, and the network namespace of `serve.sh --tap`."""

import ctypes
import os
import queue
import random
import re
import signal
import socket
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SERVE = os.path.join(HERE, "serve.sh")

# Building and booting the image; the first run may compile for a minute.
START_TIMEOUT = 300
# Any one exchange with the image.
IO_TIMEOUT = 10
CLONE_NEWNET = 0x40000000


class Serve:
    """`serve.sh ARGS` as a child: its addresses, and its later lines."""

    def __init__(self, *args):
        self.args = args
        self.proc = subprocess.Popen(
            ["bash", SERVE, *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()
        first = self.line(START_TIMEOUT)
        if not first.startswith("listening on "):
            self.kill()
            raise AssertionError(f"serve.sh's first line is {first!r}, not 'listening on ...'")
        self.tcp = address(first)
        self.echo = address(self.line(IO_TIMEOUT), "echo on ")
        self.udp = address(self.line(IO_TIMEOUT), "udp on ")
        self.control = address(self.line(IO_TIMEOUT), "control on ")
        self.netns = None
        if "--tap" in args:
            match = re.match(r"netns pid (\d+):", self.line(IO_TIMEOUT))
            assert match, "serve.sh --tap names no network namespace"
            self.netns = int(match.group(1))

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout):
        """The next line; fails past `timeout` seconds or at the end."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"serve.sh printed nothing for {timeout} s") from None
        if line is None:
            raise AssertionError(f"serve.sh ended (status {self.proc.wait()})")
        self.seen.append(line)
        return line

    def expect(self, pattern, timeout=IO_TIMEOUT):
        """Waits for a line matching `pattern` (a regex), at most `timeout` s."""
        for earlier in self.seen:
            if re.search(pattern, earlier):
                return earlier
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}")
            line = self.line(left)
            if re.search(pattern, line):
                return line

    def stop(self, timeout=30):
        """SIGTERM; returns serve.sh's exit status and reads its last lines."""
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout)
        while True:
            try:
                line = self.lines.get(timeout=IO_TIMEOUT)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        return status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def board_args(argv, flags=("--tap", "--bare")):
    """serve.sh's arguments out of a command line of `flags` and
    `--board NAME`, or None if it has anything else."""
    args = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--board" and rest:
            args += [arg, rest.pop(0)]
        elif arg in flags:
            args.append(arg)
        else:
            return None
    return args


def address(line, prefix="listening on "):
    assert line.startswith(prefix), f"expected {prefix!r}..., got {line!r}"
    host, port = line[len(prefix) :].split()[0].rsplit(":", 1)
    return host, int(port)


def enter_netns(pid):
    """Moves this thread (and the threads and processes it starts from now
    on) into the network namespace of process `pid`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the namespace of serve.sh --tap")
    finally:
        os.close(fd)


def connect(addr, **kwargs):
    sock = socket.create_connection(addr, timeout=IO_TIMEOUT, **kwargs)
    sock.settimeout(IO_TIMEOUT)
    return sock


def read_to_eof(sock):
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def read_line(sock, pending=b""):
    """Reads up to a newline; returns (line, bytes after it)."""
    data = pending
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"EOF before a whole line: {data!r}")
        data += chunk
    end = data.index(b"\n") + 1
    return data[:end], data[end:]


def echo_bulk(addr, payload):
    """Sends `payload` through the echo service while reading it back;
    returns (what came back, seconds)."""
    sock = connect(addr)
    failure = []

    def send():
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError as err:
            failure.append(err)

    start = time.perf_counter()
    sender = threading.Thread(target=send)
    sender.start()
    try:
        back = read_to_eof(sock)
    finally:
        sender.join(IO_TIMEOUT)
        sock.close()
    took = time.perf_counter() - start
    assert not failure, f"sending failed: {failure[0]}"
    return back, took


def lines_payload(size, seed, longest=1023):
    """Exactly `size` bytes of printable lines, each of at most `longest`
    bytes plus its newline."""
    rng = random.Random(seed)
    printable = bytes(33 + b % 94 for b in range(256))
    body = rng.randbytes(size).translate(printable)
    out = bytearray()
    while len(out) < size:
        n = min(rng.randint(1, longest), size - len(out) - 1)
        out += body[len(out) : len(out) + n] + b"\n"
    return bytes(out)
