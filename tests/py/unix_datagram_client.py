# The socketserver docs' UDP client on a Unix datagram socket: the first
# argument is the server's socket path. The client binds a path of its own
# (the server's path plus ".client"), or the server could not reply.
import os
import socket
import sys

PATH = sys.argv[1]
CLIENT_PATH = PATH + ".client"
data = " ".join(sys.argv[2:])

sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.settimeout(10)
sock.bind(CLIENT_PATH)
try:
    sock.sendto(bytes(data + "\n", "utf-8"), PATH)
    received = str(sock.recv(1024), "utf-8")
finally:
    sock.close()
    os.unlink(CLIENT_PATH)

print("Sent:     {}".format(data))
print("Received: {}".format(received))
