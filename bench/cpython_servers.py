# CPython's socketserver serving the handlers the Rust servers serve, for
# socketserver-bench (bench/src/main.rs runs this script; see docs/bench/).
#
#   python3 cpython_servers.py serve KIND HOST:PORT
#       Serves until SIGTERM, after printing "listening on HOST:PORT".
#       KIND: py-threading-upper, py-forking-upper (one line, stripped and
#       upper-cased, then close), py-threading-lines (echo every line),
#       py-udp-upper (a datagram stripped and upper-cased), py-echo (echo
#       raw bytes, 1 KiB at a time, as socketserver::handlers::Echo).
#
#   python3 cpython_servers.py shutdown-probe HOST:PORT
#       A ThreadingTCPServer (upper-cased line) whose serve_forever(0.5) is
#       started and shut down on command. Prints "listening on HOST:PORT",
#       then for each stdin line "measure N" prints "latencies" followed by
#       N latencies in microseconds, from the shutdown() call to
#       serve_forever returning; "quit" ends it.
import random
import signal
import socketserver
import sys
import threading
import time
import queue

BACKLOG = 128
POLL_INTERVAL = 0.5


class UpperLine(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline().strip().upper())


class EchoLines(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            data = self.rfile.read1(1024)
            if not data:
                return
            self.wfile.write(data)


class UpperDatagram(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data.strip().upper(), self.client_address)


class ThreadingTCPServer(socketserver.ThreadingTCPServer):
    request_queue_size = BACKLOG


class ForkingTCPServer(socketserver.ForkingTCPServer):
    request_queue_size = BACKLOG


class TCPServer(socketserver.TCPServer):
    request_queue_size = BACKLOG


SERVERS = {
    "py-threading-upper": (ThreadingTCPServer, UpperLine),
    "py-forking-upper": (ForkingTCPServer, UpperLine),
    "py-threading-lines": (ThreadingTCPServer, EchoLines),
    "py-udp-upper": (socketserver.UDPServer, UpperDatagram),
    "py-echo": (TCPServer, Echo),
}


def address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def serve(kind, addr):
    server_class, handler = SERVERS[kind]
    # SIGTERM ends serve_forever the way Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with server_class(address(addr), handler) as server:
            print("listening on %s:%d" % server.server_address[:2], flush=True)
            server.serve_forever(POLL_INTERVAL)
    except KeyboardInterrupt:
        pass


def shutdown_probe(addr):
    server = ThreadingTCPServer(address(addr), UpperLine)
    start = threading.Event()
    returned = queue.Queue()

    def serving():
        while True:
            start.wait()
            start.clear()
            server.serve_forever(POLL_INTERVAL)
            returned.put(time.perf_counter())

    threading.Thread(target=serving, daemon=True).start()
    print("listening on %s:%d" % server.server_address[:2], flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["quit"]:
            break
        latencies = []
        for _ in range(int(words[1])):
            start.set()
            # Anywhere within one poll interval: the latency depends on it.
            time.sleep(random.uniform(0.01, 0.01 + POLL_INTERVAL))
            began = time.perf_counter()
            server.shutdown()
            latencies.append(round((returned.get() - began) * 1e6))
        print("latencies", *latencies, flush=True)
    server.server_close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "shutdown-probe":
        shutdown_probe(sys.argv[2])
    else:
        sys.exit("usage: cpython_servers.py serve KIND HOST:PORT | shutdown-probe HOST:PORT")
