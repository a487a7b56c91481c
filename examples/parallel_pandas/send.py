#!/usr/bin/python3
"""The seed's sender: every line of a CSV file as a frame (4-byte
big-endian length, then the line) to host:port, then the end-of-input frame
(a single 0x04 byte).

Usage: send.py INPUT HOST PORT"""

import sys

from trellis.stream import send_framed


def main(argv):
    path, host, port = argv
    with open(path, "rb") as f:
        send_framed((line.rstrip(b"\r\n") for line in f), host, int(port))
    print(f"Done sending {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
