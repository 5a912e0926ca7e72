"""The hook's thin client: hand the call to the agent, else run the engine in-process.

The shim runs this file by path with `python -S -E`, so it must import nothing but
builtin modules: Python's start plus this file costs ~9 ms, where importing lxml and
pyroute2 would cost ~200 ms. The wire format is a list of netstrings
(b"<len>:<bytes>,"): request [b"hook", env, *argv, xml], reply [rc, stderr, stdout],
where env carries the shim's VZLIBVIRT_* call context as NUL-separated K=V pairs.
When no agent answers the connect, the same call runs in this process (slower, same
result), so a host without the agent still works.
"""

import _socket
import os
import sys

MAX_XML = 16 << 20  # vzlibvirt.MAX_XML_BYTES (this client imports no package)
FORWARDED_ENV = ("VZLIBVIRT_DOMAIN_UUID", "VZLIBVIRT_STATE_DIR")
DEFAULT_SOCKET = "/run/vzlibvirt/agent.sock"
TIMEOUT = 120.0  # a wire takes milliseconds; this only guards against a wedged agent


def encode(fields):
    out = []
    for f in fields:
        out.append(b"%d:" % len(f))
        out.append(f)
        out.append(b",")
    return b"".join(out)


def decode(buf):
    fields, pos = [], 0
    while pos < len(buf):
        colon = buf.index(b":", pos)
        n = int(buf[pos:colon])
        start = colon + 1
        if buf[start + n:start + n + 1] != b",":
            raise ValueError("bad netstring")
        fields.append(buf[start:start + n])
        pos = start + n + 1
    return fields


def recv_all(sock, limit=None):
    chunks, size = [], 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if limit is not None and size > limit:
            raise ValueError("message too large")
        chunks.append(chunk)


def ask_agent(path, argv, data):
    """The agent's (rc, stderr, stdout), or None when no agent listens at `path`."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
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

    site.main()
    # the package this file belongs to, wherever it is installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        from vzlibvirt.hook import main
    except ImportError as exc:
        sys.stderr.write(f"vzlibvirt: cannot load the engine: {exc}\n")
        return 1
    return main(argv, stdin=io.BytesIO(data))


def run(argv):
    data = sys.stdin.buffer.read(MAX_XML + 1)
    path = os.environ.get("VZLIBVIRT_AGENT_SOCKET", DEFAULT_SOCKET)
    if path != "none":
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
