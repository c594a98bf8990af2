# A socket-activation launcher, as systemd is one (sd_listen_fds(3)): binds
# the sockets, places them on descriptors 3, 4, ..., then execs the program
# with LISTEN_PID (its own pid, which exec keeps), LISTEN_FDS and
# LISTEN_FDNAMES set.
#
# Usage: activate.py KIND=ADDRESS[=NAME]... -- PROGRAM ARGS...
#   KIND: tcp (HOST:PORT), udp (HOST:PORT), unix-stream (PATH), unix-dgram (PATH)
# Prints `bound ADDRESS` on stderr for each socket, in order, before the exec.
import fcntl
import os
import socket
import sys

KINDS = {
    "tcp": (socket.AF_INET, socket.SOCK_STREAM),
    "udp": (socket.AF_INET, socket.SOCK_DGRAM),
    "unix-stream": (socket.AF_UNIX, socket.SOCK_STREAM),
    "unix-dgram": (socket.AF_UNIX, socket.SOCK_DGRAM),
}

split = sys.argv.index("--")
specs, program = sys.argv[1:split], sys.argv[split + 1 :]
sockets, names = [], []
for spec in specs:
    kind, address, *name = spec.split("=")
    family, type_ = KINDS[kind]
    sock = socket.socket(family, type_)
    if family == socket.AF_UNIX:
        sock.bind(address)
    else:
        host, port = address.rsplit(":", 1)
        sock.bind((host, int(port)))
    if type_ == socket.SOCK_STREAM:
        sock.listen(16)
    bound = sock.getsockname()
    if family != socket.AF_UNIX:
        bound = "{}:{}".format(*bound)
    print("bound", bound, file=sys.stderr, flush=True)
    sockets.append(sock)
    names.append(name[0] if name else "unknown")

# Out of the way first, so that no target descriptor is one still needed.
high = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 100) for sock in sockets]
for fd, copy in enumerate(high, start=3):
    os.dup2(copy, fd)  # the copy on fd is inheritable
    os.close(copy)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(sockets))
os.environ["LISTEN_FDNAMES"] = ":".join(names)
os.execv(program[0], program)
