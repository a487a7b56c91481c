#!/usr/bin/python3
"""The seed's data_receiver --framed: listens on host:port, writes each
frame's line and a newline to OUTPUT until the end-of-input frame. Prints
the port it listens on (useful with port 0) on its first line.

Usage: receiver.py HOST PORT OUTPUT"""

import socket
import sys

from trellis.stream import receive_framed


def main(argv):
    host, port, output = argv
    with socket.create_server((host, int(port))) as server, open(output, "wb") as out:
        print(server.getsockname()[1], flush=True)
        lines = receive_framed(server, out)
    print(f"received {lines} lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
