# The socketserver docs' TCP client, wrapped in an SSL context that trusts
# the test's certificate (the CA file, second on the command line). The
# address comes first as HOST:PORT; the server's certificate is for
# "localhost".
import socket
import ssl
import sys

HOST, PORT = sys.argv[1].rsplit(":", 1)
PORT = int(PORT)
CAFILE = sys.argv[2]
data = " ".join(sys.argv[3:])

context = ssl.create_default_context(cafile=CAFILE)

# Create a socket (SOCK_STREAM means a TCP socket)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.settimeout(10)  # a broken server fails the test instead of hanging it
try:
    # Connect to server and send data
    sock.connect((HOST, PORT))
    tls = context.wrap_socket(sock, server_hostname="localhost")
    tls.sendall(bytes(data + "\n", "utf-8"))

    # Receive data from the server and shut down
    received = str(tls.recv(1024), "utf-8")
    print("Version:  {}".format(tls.version()))
finally:
    sock.close()

print("Sent:     {}".format(data))
print("Received: {}".format(received))
