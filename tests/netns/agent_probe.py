"""Run as an unprivileged user by test_agent: try one request on the agent's socket."""

import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from vzlibvirt.hookclient import decode, encode, recv_all  # noqa: E402

s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit()
s.sendall(encode([b"hook", b"", b"lxc", b"x", b"prepare", b"begin", b"-", b"<x/>"]))
s.shutdown(socket.SHUT_WR)
print(decode(recv_all(s)))
