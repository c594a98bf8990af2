# The socketserver docs' TCP client on a Unix stream socket: the first
# argument is the server's socket path.
import socket
import sys

PATH = sys.argv[1]
data = " ".join(sys.argv[2:])

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
try:
    sock.connect(PATH)
    sock.sendall(bytes(data + "\n", "utf-8"))
    received = str(sock.recv(1024), "utf-8")
finally:
    sock.close()

print("Sent:     {}".format(data))
print("Received: {}".format(received))
