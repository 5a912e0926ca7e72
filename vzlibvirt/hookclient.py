"""The hook's thin client: hand the call to the agent, else run the engine in-process.

The shim runs this file by path with `python -S -E`, so it imports nothing but builtin
modules and the stdlib-only contract (its wire format, socket default and call context):
Python's start plus this file costs ~9 ms, where importing lxml and pyroute2 would cost
~200 ms. When no agent answers the connect, the same call runs in this process (slower,
same result), so a host without the agent still works.
"""

import _socket
import os
import sys

if __name__ == "__main__":  # run by path: this file's package, not site-packages (-S)
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from vzlibvirt.contract import (  # noqa: E402  (stdlib only, imports nothing else)
    AGENT_SOCKET_ENV,
    CLIENT_TIMEOUT_S,
    DEFAULT_SOCKET,
    FORWARDED_ENV,
    MAX_XML_BYTES,
    NO_AGENT,
    decode,
    encode,
    recv_all,
)


def ask_agent(path, argv, data):
    """The agent's (rc, stderr, stdout), or None when no agent listens at `path`."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CLIENT_TIMEOUT_S)
        try:
            sock.connect(path)
        except OSError:
            return None
        env = b"\0".join(f"{k}={os.environ[k]}".encode() for k in FORWARDED_ENV
                         if k in os.environ)
        sock.sendall(encode([b"hook", env, *[a.encode() for a in argv], data]))
        sock.shutdown(_socket.SHUT_WR)
        rc, err, out = decode(recv_all(sock))
        return int(rc), err, out
    finally:
        sock.close()


def in_process(argv, data):
    """Fallback: the full hook in this process (site-packages were skipped by -S)."""
    import io
    import site

    site.main()  # the engine's dependencies (lxml, pyroute2); this package is on the path
    try:
        from vzlibvirt.hook import main
    except ImportError as exc:
        sys.stderr.write(f"vzlibvirt: cannot load the engine: {exc}\n")
        return 1
    return main(argv, stdin=io.BytesIO(data))


def run(argv):
    data = sys.stdin.buffer.read(MAX_XML_BYTES + 1)
    path = os.environ.get(AGENT_SOCKET_ENV, DEFAULT_SOCKET)
    if path != NO_AGENT:
        try:
            answer = ask_agent(path, argv, data)
        except (OSError, ValueError) as exc:
            name = argv[1] if len(argv) > 1 else "?"
            sys.stderr.write(f"vzlibvirt: domain '{name}': the agent at {path} failed: {exc}\n")
            return 1
        if answer is not None:
            rc, err, out = answer
            sys.stdout.buffer.write(out)
            sys.stderr.buffer.write(err)
            return rc
    return in_process(argv, data)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
