"""dnsmasq's hosts file: one "MAC,tag:TAP,IP" line per routed VM interface, so a stock
cloud image's DHCP client gets its /32 with no guest-side work.

The line is an entry like a route (entries/dhcp.py: the state record lists it, stop
removes it), and the supervisor (dnsmasq.py) rebuilds the whole file from the records
when it (re)starts dnsmasq. dnsmasq re-reads the hosts file on SIGHUP, so a guest start
or stop costs one atomic rewrite and one signal, never a restart. `tag:TAP` makes
dnsmasq answer the MAC only on its own tap. Writers run under the state store's lock
(engine, heal, rebuild). dnsmasq keeps leases in memory past a guest's stop; when the IP
goes to another MAC, the entry first releases the old lease (release_lease: a
DHCPRELEASE on the new tap), so the IP is not refused until the old lease expires.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import struct
from pathlib import Path

from vzlibvirt.fsutil import atomic_write

HOSTS = "hosts"
PIDFILE = "dnsmasq.pid"
# "MAC,IP" of removed hosts: dnsmasq still holds their leases in memory and would refuse
# the IP to the next VM (another MAC) until they expire, so add() releases them first
RELEASED = "released"
SIOCGIFADDR = 0x8915


def dhcp_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "dhcp"


def host_line(mac: str, tap: str, ip: str) -> str:
    return f"{mac.lower()},tag:{tap},{ip}"


def read_hosts(directory: Path, name: str = HOSTS) -> list[str]:
    try:
        text = (Path(directory) / name).read_text()
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def ensure_dir(directory: Path) -> Path:
    """The dhcp dir, readable by dnsmasq after it drops root to `nobody`.

    dnsmasq re-reads the hosts file as that user on SIGHUP, so the dir and file are
    world-readable (MACs and IPs only) and the state root gets o+x (traverse, not list).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    parent = directory.parent
    mode = parent.stat().st_mode & 0o7777
    if mode & 0o011 != 0o011:
        os.chmod(parent, mode | 0o011)
    return directory


def write_hosts(directory: Path, lines: list[str], name: str = HOSTS) -> None:
    """Replace the hosts file atomically: dnsmasq never reads half of it."""
    directory = ensure_dir(directory)
    data = "".join(f"{line}\n" for line in lines).encode()
    atomic_write(directory / name, data, 0o644)


def dnsmasq_pid(directory: Path) -> int | None:
    """The pid of our running dnsmasq, checked against /proc so a recycled pid is never
    signalled."""
    try:
        pid = int((Path(directory) / PIDFILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if not cmdline.split(b"\0")[0].endswith(b"dnsmasq") or \
            str(directory).encode() not in cmdline:
        return None
    return pid


def reload(directory: Path) -> bool:
    """SIGHUP dnsmasq so it re-reads the hosts file; False when none runs (the supervisor
    rebuilds the file when it starts one)."""
    pid = dnsmasq_pid(directory)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGHUP)
        return True
    return False


def release_packet(mac: str, ip: str, server: str) -> bytes:
    """A DHCPRELEASE as the client `mac` would send it for `ip` (RFC 2131)."""
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    head = struct.pack("!BBBBIHH4s4s4s4s16s", 1, 1, 6, 0, int.from_bytes(os.urandom(4)),
                       0, 0, socket.inet_aton(ip), bytes(4), bytes(4), bytes(4), chaddr)
    options = bytes([53, 1, 7, 54, 4]) + socket.inet_aton(server) + bytes([255])
    return head + bytes(192) + b"\x63\x82\x53\x63" + options


def release_lease(tap: str, mac: str, ip: str) -> None:
    """Make dnsmasq drop the lease of `mac` on `ip`: a DHCPRELEASE sent on `tap` to the
    tap's own address (dnsmasq's server id); the kernel delivers it locally as received
    on `tap`, which is all dnsmasq needs to find the range."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, tap.encode())
        req = struct.pack("256s", tap.encode()[:15])
        server = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), SIOCGIFADDR, req)[20:24])
        sock.sendto(release_packet(mac, ip, server), (server, 67))
