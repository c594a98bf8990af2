# CPython's ForkingTCPServer on the bench_conn workload: read one line,
# reply with it stripped and upper-cased, close. Same backlog as the Rust
# servers. Usage: python3 cpython_forking_server.py HOST:PORT
import signal
import socketserver
import sys


class UpperLine(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline().strip().upper())


class Server(socketserver.ForkingTCPServer):
    request_queue_size = 128


host, port = sys.argv[1].rsplit(":", 1)
# SIGTERM ends serve_forever the way Ctrl-C does.
signal.signal(signal.SIGTERM, signal.default_int_handler)
try:
    with Server((host, int(port)), UpperLine) as server:
        print("listening on %s:%d" % server.server_address[:2], flush=True)
        server.serve_forever()
except KeyboardInterrupt:
    pass
