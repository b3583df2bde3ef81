#!/usr/bin/env python3
# A stand-in for systemd's notify socket, for tests (Node cannot receive Unix
# datagrams): binds the datagram socket given as argv[1], prints each message
# as one JSON string per line, and closes any file descriptor passed with it,
# as the service manager does, which releases systemd-notify's BARRIER wait.
import array
import json
import os
import socket
import sys

sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
print(json.dumps("LISTENING"), flush=True)
while True:
    message, ancillary, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(64 * 4))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    print(json.dumps(message.decode()), flush=True)
