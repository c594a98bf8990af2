"""Holds several connections to a line-echo server open at once and sends
lines on them in turn, as keep-alive clients do; prints one line per reply
and `all N echoed` at the end.

Usage: python3 persistent_client.py HOST:PORT CONNECTIONS ROUNDS
"""
import socket
import sys

host, port = sys.argv[1].rsplit(":", 1)
connections, rounds = int(sys.argv[2]), int(sys.argv[3])

clients = [socket.create_connection((host, int(port)), timeout=10) for _ in range(connections)]
readers = [c.makefile("rb") for c in clients]
echoed = 0
for r in range(rounds):
    for i, c in enumerate(clients):
        c.sendall(f"connection {i} line {r}\n".encode())
    for i, f in enumerate(readers):
        reply = f.readline().decode()
        assert reply == f"connection {i} line {r}\n", reply
        echoed += 1
print(f"all {echoed} echoed")
