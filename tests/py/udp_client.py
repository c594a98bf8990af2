# The socketserver docs' UDP client; only the address handling differs:
# it comes first on the command line as HOST:PORT.
import socket
import sys

HOST, PORT = sys.argv[1].rsplit(":", 1)
PORT = int(PORT)
data = " ".join(sys.argv[2:])

# SOCK_DGRAM is the socket type to use for UDP sockets
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(10)  # a lost reply fails the test instead of hanging it

# As you can see, there is no connect() call; UDP has no connections.
# Instead, data is directly sent to the recipient via sendto().
sock.sendto(bytes(data + "\n", "utf-8"), (HOST, PORT))
received = str(sock.recv(1024), "utf-8")

print("Sent:     {}".format(data))
print("Received: {}".format(received))
