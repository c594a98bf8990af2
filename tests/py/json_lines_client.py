# Talks to the json_lines example one line at a time: each argument is sent
# as a line; a line that is valid JSON gets its one reply line read before
# the next is sent, and after one that is not, everything up to the server's
# close is read. Prints each reply line.
import json
import socket
import sys

HOST, PORT = sys.argv[1].rsplit(":", 1)
with socket.create_connection((HOST, int(PORT)), timeout=10) as sock:
    replies = sock.makefile("rb")
    for line in sys.argv[2:]:
        sock.sendall(line.encode() + b"\n")
        try:
            json.loads(line)
        except ValueError:
            break
        print("Received: {}".format(replies.readline().decode().rstrip("\n")))
    sock.shutdown(socket.SHUT_WR)
    for rest in replies:
        print("Received: {}".format(rest.decode().rstrip("\n")))
