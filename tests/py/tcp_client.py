# The socketserver docs' TCP client; only the address handling differs:
# it comes first on the command line as HOST:PORT.
import socket
import sys

HOST, PORT = sys.argv[1].rsplit(":", 1)
PORT = int(PORT)
data = " ".join(sys.argv[2:])

# Create a socket (SOCK_STREAM means a TCP socket)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.settimeout(10)  # a broken server fails the test instead of hanging it
try:
    # Connect to server and send data
    sock.connect((HOST, PORT))
    sock.sendall(bytes(data + "\n", "utf-8"))

    # Receive data from the server and shut down
    received = str(sock.recv(1024), "utf-8")
finally:
    sock.close()

print("Sent:     {}".format(data))
print("Received: {}".format(received))
