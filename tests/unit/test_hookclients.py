"""The two hook clients (Perl builtins and stdlib Python) speak the agent's protocol the
same way: a fake agent on a UNIX socket records the request and sends a reply."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vzlibvirt.hookclient import decode, encode, recv_all
from vzlibvirt.hookinstall import CLIENT, PERL_CLIENT

XML = b"<domain type='lxc'>\n  <name>ct1</name>\n  <uuid>x</uuid>\n</domain>\n\x00\xff"


class FakeAgent:
    def __init__(self, path: Path, reply: list[bytes]):
        self.path, self.reply, self.requests = path, reply, []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            self.requests.append(decode(recv_all(conn)))
            conn.sendall(encode(self.reply))


def _clients():
    # perl-base is Essential on Debian: the Perl client is always there to test
    return [("python", [sys.executable, "-S", "-E", str(CLIENT)]),
            ("perl", ["/usr/bin/perl", str(PERL_CLIENT), sys.executable, str(CLIENT)])]


@pytest.mark.parametrize("name,cmd", _clients(), ids=[n for n, _ in _clients()])
def test_client_round_trip(name, cmd, tmp_path):
    agent = FakeAgent(tmp_path / "a.sock", [b"1", b"vzlibvirt: refused\n", b"out\x00put"])
    env = {"PATH": "/usr/bin:/bin", "VZLIBVIRT_AGENT_SOCKET": str(agent.path),
           "VZLIBVIRT_DOMAIN_UUID": "0b1f6a2e-1d6c-4a55-9c8d-2f1e7d6c0a01"}
    p = subprocess.run([*cmd, "lxc", "ct1", "stopped", "end", "-"], input=XML,
                       capture_output=True, env=env, timeout=30)
    agent.thread.join(5)
    assert (p.returncode, p.stdout, p.stderr) == (1, b"out\x00put", b"vzlibvirt: refused\n")
    (req,) = agent.requests
    assert req[0] == b"hook" and req[2:-1] == [b"lxc", b"ct1", b"stopped", b"end", b"-"]
    assert req[1] == b"VZLIBVIRT_DOMAIN_UUID=0b1f6a2e-1d6c-4a55-9c8d-2f1e7d6c0a01"
    assert req[-1] == XML


@pytest.mark.parametrize("name,cmd", _clients(), ids=[n for n, _ in _clients()])
def test_client_reports_an_agent_that_dies(name, cmd, tmp_path):
    path = tmp_path / "a.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)

    def die():
        conn, _ = srv.accept()
        conn.close()  # killed mid-request: no reply

    threading.Thread(target=die, daemon=True).start()
    env = {"PATH": "/usr/bin:/bin", "VZLIBVIRT_AGENT_SOCKET": str(path)}
    p = subprocess.run([*cmd, "lxc", "ct1", "started", "begin", "-"], input=XML,
                       capture_output=True, env=env, timeout=30)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("vzlibvirt: domain 'ct1': the agent at")


def test_perl_client_without_agent_runs_the_python_client(tmp_path):
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\ncat > "$(dirname "$0")/stdin"; echo "$VZLIBVIRT_AGENT_SOCKET|$*"'
                    '; exit 3\n')
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "VZLIBVIRT_AGENT_SOCKET": str(tmp_path / "absent.sock")}
    p = subprocess.run(["/usr/bin/perl", str(PERL_CLIENT), str(fake), "/x/client.py", "qemu",
                        "vm1", "prepare", "begin", "-"], input=XML, capture_output=True,
                       env=env, timeout=30)
    assert p.returncode == 3
    assert p.stdout == b"none|-S -E /x/client.py qemu vm1 prepare begin -\n"
    assert (tmp_path / "stdin").read_bytes() == XML


def test_agent_prints_its_systemd_unit():
    p = subprocess.run([sys.executable, "-m", "vzlibvirt", "agent", "--print-unit"],
                       capture_output=True, text=True, env={**os.environ}, timeout=30)
    assert p.returncode == 0
    assert "[Service]" in p.stdout and "agent\n" in p.stdout and "@EXEC@" not in p.stdout
