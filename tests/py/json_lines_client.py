# Sends each argument as one line to the json_lines example and prints what
# comes back, until the server closes.
import socket
import sys

HOST, PORT = sys.argv[1].rsplit(":", 1)
with socket.create_connection((HOST, int(PORT)), timeout=10) as sock:
    for line in sys.argv[2:]:
        sock.sendall(line.encode() + b"\n")
    sock.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
for line in reply.decode().splitlines():
    print("Received: {}".format(line))
