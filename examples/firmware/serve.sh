#!/usr/bin/env bash
# Serves the host's own clients from a board's NIC image: builds it and
# runs it under QEMU (lm3s6965evb: the Stellaris Ethernet controller;
# riscv-virt: virtio-net on QEMU's RISC-V virt machine).
# usage: serve.sh [--board lm3s6965evb|riscv-virt] [--tap] [--bare]
#
# Default: QEMU's user-mode network (no root), with host forwards from free
# ports on 127.0.0.1 to the image's services. Prints, first:
#   listening on 127.0.0.1:PORT    UpperOnce (TCP; the docs' tcp_client.py)
#   echo on 127.0.0.1:PORT         EchoLines (TCP)
#   udp on 127.0.0.1:PORT          UpperDatagram (the docs' udp_client.py)
#   control on 127.0.0.1:PORT      UDP; the datagram `stop` ends the image
# then the image's own lines (verify_request refusals, handle_error reports).
#
# --tap: as root, in a private network namespace made for the run: a tap
# device there holds 10.0.2.2/24 and the image is 10.0.2.15 (ports 9999,
# 9998, 9999/udp, 9997/udp). Those addresses exist only in that namespace;
# the line after the addresses, `netns pid PID`, names it: run clients with
# `nsenter -t PID -n COMMAND`. It vanishes when serve.sh ends.
#
# --board: the board (default lm3s6965evb); SERVE_BOARD=NAME in the
# environment does the same.
# --bare: the bare smoltcp twin (nic_bare) instead, for comparison.
# SERVE_PCAP=FILE in the environment: the NIC's traffic is written there.
#
# SIGTERM or SIGINT asks the image to stop (the control port); serve.sh
# exits 0 once it has stopped cleanly (within 10 s; otherwise QEMU is killed
# and the status is 1). If the image ends by itself, its status is serve.sh's.
set -euo pipefail
cd "$(dirname "$0")"
self="$PWD/$(basename "$0")"
source ./common.sh

usage() { sed -n '5p' "$self" | sed 's/^# //'; }

tap=0 image=nic board=${SERVE_BOARD:-lm3s6965evb}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
    --tap) tap=1 ;;
    --bare) image=nic_bare ;;
    --board)
        i=$((i + 1))
        board=${args[i]:-}
        ;;
    --board=*) board=${args[i]#--board=} ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
done

# --tap re-runs this script in a new network namespace; the variable, set
# to this process's id (which survives the exec), marks the re-run.
if ((tap)) && [[ ${SERVE_SH_NETNS:-} != "$$" ]]; then
    if ((EUID != 0)); then
        echo "serve.sh --tap needs root (a network namespace and a tap device)" >&2
        exit 1
    fi
    for tool in unshare ip; do
        command -v "$tool" >/dev/null || {
            echo "serve.sh --tap needs $tool" >&2
            exit 1
        }
    done
    [[ -e /dev/net/tun ]] || {
        echo "serve.sh --tap needs /dev/net/tun" >&2
        exit 1
    }
    export SERVE_SH_NETNS=$$
    exec unshare -n -- bash "$self" "$@"
fi

use_board "$board"
install_prerequisites >&2
build_release --bin "$image" >&2

# The services' ports in the image.
GUEST_TCP=9999 GUEST_ECHO=9998 GUEST_UDP=9999 GUEST_CONTROL=9997

if ((tap)); then
    ip link set lo up
    ip tuntap add dev tap0 mode tap
    ip addr add 10.0.2.2/24 dev tap0
    ip link set tap0 up
    host=10.0.2.15
    tcp_port=$GUEST_TCP echo_port=$GUEST_ECHO udp_port=$GUEST_UDP control_port=$GUEST_CONTROL
    netdev="tap,id=n0,ifname=tap0,script=no,downscript=no"
else
    host=127.0.0.1
fi

# Free ports on 127.0.0.1, two TCP and two UDP: bound to port 0, then
# released for QEMU (which fails if another program takes one first: the
# start is then retried with new ports).
free_ports() {
    python3 -c '
import socket
socks = [socket.socket(socket.AF_INET, kind) for kind in
         (socket.SOCK_STREAM, socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_DGRAM)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
'
}

# Starts QEMU with the image's output on fd 3; true once the image serves.
start() {
    if ((!tap)); then
        read -r tcp_port echo_port udp_port control_port < <(free_ports)
        netdev="user,id=n0,restrict=off"
        netdev+=",hostfwd=tcp:127.0.0.1:$tcp_port-:$GUEST_TCP"
        netdev+=",hostfwd=tcp:127.0.0.1:$echo_port-:$GUEST_ECHO"
        netdev+=",hostfwd=udp:127.0.0.1:$udp_port-:$GUEST_UDP"
        netdev+=",hostfwd=udp:127.0.0.1:$control_port-:$GUEST_CONTROL"
    fi
    local fifo line dump=()
    [[ -n ${SERVE_PCAP:-} ]] && dump=(-object "filter-dump,id=dump,netdev=n0,file=$SERVE_PCAP")
    fifo=$(mktemp -d)/out
    mkfifo "$fifo"
    "${QEMU[@]}" -netdev "$netdev" "${QEMU_NIC[@]}" "${dump[@]}" \
        -kernel "$out/$image" </dev/null >"$fifo" 2> >(qemu_noise_filter) &
    qemu_pid=$!
    exec 3<"$fifo"
    rm -r "$(dirname "$fifo")"
    while IFS= read -r -t 60 -u 3 line; do
        [[ $line == "serving on "* ]] && return 0
        printf '%s\n' "$line" >&2
    done
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" || true
    exec 3<&-
    return 1
}

attempts=3
until start; do
    attempts=$((attempts - 1))
    if ((tap || attempts == 0)); then
        echo "the $image image did not start serving" >&2
        exit 1
    fi
done

echo "listening on $host:$tcp_port"
echo "echo on $host:$echo_port"
echo "udp on $host:$udp_port"
echo "control on $host:$control_port"
((tap)) && echo "netns pid $$: run clients with nsenter -t $$ -n COMMAND"
# The image's own lines, as they come.
cat <&3 &
relay=$!
exec 3<&-

stop() {
    trap - TERM INT
    printf stop >"/dev/udp/$host/$control_port" || true
    sleep 10 </dev/null >/dev/null 2>&1 &
    local patience=$! ended status=0
    wait -n -p ended "$qemu_pid" "$patience" || status=$?
    if [[ $ended != "$qemu_pid" ]]; then
        echo "the $image image did not stop when asked: killing QEMU" >&2
        kill "$qemu_pid" 2>/dev/null || true
        status=1
    fi
    kill "$patience" 2>/dev/null || true
    wait "$relay" || true
    exit "$status"
}
trap stop TERM INT

status=0
wait "$qemu_pid" || status=$?
wait "$relay" || true
exit "$status"
