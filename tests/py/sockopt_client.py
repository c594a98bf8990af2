# Connects to the sockopt_server example, sends a line, and prints its own
# address and the server's one-line reply.
import socket
import sys

HOST, PORT = sys.argv[1].rsplit(":", 1)
with socket.create_connection((HOST, int(PORT)), timeout=10) as sock:
    sock.sendall(b"what do you see?\n")
    reply = b""
    while True:
        chunk = sock.recv(1024)
        if not chunk:
            break
        reply += chunk
    host, port = sock.getsockname()[:2]
print("Local: {}:{}".format(host, port))
print("Received: {}".format(reply.decode().strip()))
