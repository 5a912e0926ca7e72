"""What several bench scripts share: routed filler guests, iperf3 runs, CPU counters,
and the one-line figures they print. Scaffolding like tests/nettopo.py: it may run `ip`
and friends, but only inside namespaces the scripts create."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# IPv4 addresses the rules allow for guests behind a test host besides the LAN /24
FILLER_V4 = [f"203.0.113.{i}" for i in range(1, 255)]


def filler_ips(i: int, v4: bool = True) -> list[str]:
    """Filler guest I: one IPv6 address (room for any count), and while the pool lasts,
    an IPv4 address from 203.0.113.0/24."""
    ips = [f"2001:db8:f::{i + 1:x}"]
    if v4 and i < len(FILLER_V4):
        ips.append(FILLER_V4[i])
    return ips


def wire_routed_fillers(start: int, stop: int, config: Path, v4: bool = True,
                        peer_ns: str | None = None) -> list[bytes]:
    """Routed guests START..STOP-1, each a real veth (vfN) wired by the engine in this
    process, as a full host has them; run inside the host namespace. With PEER_NS, the
    guest ends go there and come up (as a container's would), so the host holds one
    device per guest, not two. Their domain XML."""
    from pyroute2 import IPRoute, NetNS

    from vzlibvirt.config import load_config
    from vzlibvirt.domain_xml import parse_domain
    from vzlibvirt.engine import wire
    from vzlibvirt.lab.domxml import domain_xml, routed
    from vzlibvirt.netlink import Netlink
    from vzlibvirt.state import StateStore

    cfg = load_config(config)
    store = StateStore(cfg.state.dir)
    xmls = []
    with IPRoute() as ipr, Netlink() as nl:
        for i in range(start, stop):
            dev = f"vf{i}"
            peer: str | dict = f"vfp{i}"
            if peer_ns:
                peer = {"ifname": peer, "net_ns_fd": peer_ns}
            ipr.link("add", ifname=dev, kind="veth", peer=peer)
            mac = f"52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
            x = domain_xml(f"filler{i}", interfaces=[routed(mac, filler_ips(i, v4),
                                                            target=dev, native=True)])
            wire(parse_domain(x, gateways=cfg.gateways, require_uuid=True), cfg, store, nl)
            xmls.append(x)
    if peer_ns:
        with NetNS(peer_ns) as guests:
            for i in range(start, stop):
                guests.link("set", index=guests.link_lookup(ifname=f"vfp{i}")[0], state="up")
    return xmls


def bridged_filler_xml(i: int, filt: str, source_bridge: str | None = None) -> bytes:
    """Filler guest I with filter FILT on port vfN: plugged by us (type='ethernet'), or
    by libvirt into SOURCE_BRIDGE (type='bridge': then we add only the port security)."""
    from vzlibvirt.lab.domxml import bridged, domain_xml

    mac = f"52:54:00:f0:{i >> 8:02x}:{i & 255:02x}"
    kind = {"type": "bridge", "source_bridge": source_bridge} if source_bridge else {}
    return domain_xml(f"fake{i}", interfaces=[bridged(
        mac, target=f"vf{i}", filter=filt, ips=[f"2001:db8:f::{i + 1:x}"], **kind)])


def wire_domains(xmls: list[bytes], config: Path | None = None, unwire: bool = False) -> None:
    """Wire (or unwire) the domains XMLS by the engine in this process, one netlink
    socket for all; run inside the host namespace."""
    from vzlibvirt.config import load_config
    from vzlibvirt.domain_xml import parse_domain
    from vzlibvirt.engine import unwire as engine_unwire
    from vzlibvirt.engine import wire
    from vzlibvirt.netlink import Netlink
    from vzlibvirt.state import StateStore

    cfg = load_config(config)
    store = StateStore(cfg.state.dir)
    with Netlink() as nl:
        for x in xmls:
            domain = parse_domain(x, gateways=cfg.gateways, require_uuid=True)
            if unwire:
                engine_unwire(domain.key, store, nl)
            else:
                wire(domain, cfg, store, nl)


def iperf(server: list[str], client: list[str], dst: str, seconds: float) -> float:
    """One iperf3 TCP run to DST, the client under the command prefix CLIENT (e.g.
    in_netns(...)), a server started under SERVER for this run only; Gbit/s received."""
    server_p = subprocess.Popen([*server, "iperf3", "-s", "-1", "-B", dst],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # bounded: wait until the server listens
            r = subprocess.run([*client, "iperf3", "-c", dst, "-t", str(seconds), "-J"],
                               capture_output=True, timeout=seconds + 60)
            out = r.stdout + r.stderr
            if b"Connection refused" in out:  # not listening yet
                time.sleep(0.05)
                continue
            data = json.loads(r.stdout) if r.stdout.strip().startswith(b"{") else {}
            if r.returncode != 0 or "error" in data:
                raise SystemExit(f"iperf3 failed: {data.get('error') or out.decode()[-300:]}")
            return data["end"]["sum_received"]["bits_per_second"] / 1e9
        raise SystemExit("iperf3 server did not start")
    finally:
        if server_p.poll() is None:
            server_p.kill()
        server_p.wait()


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide CPU counters from /proc/stat (jiffies), taken at one instant."""

    t: float
    softirq: int
    system: int
    busy: int

    @classmethod
    def now(cls) -> CpuSample:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        return cls(time.monotonic(), f[6], f[2], f[0] + f[1] + f[2] + f[5] + f[6] + f[7])

    def percent_since(self, earlier: CpuSample) -> dict[str, float]:
        """Per cent of ONE core used between EARLIER and this sample."""
        hz = 100  # USER_HZ on Linux
        span = (self.t - earlier.t) * hz / 100
        return {"softirq": (self.softirq - earlier.softirq) / span,
                "system": (self.system - earlier.system) / span,
                "busy": (self.busy - earlier.busy) / span}


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def runs_text(xs: list[float], fmt: str = "{:.2f}") -> str:
    return " ".join(fmt.format(x) for x in xs)


def ratio_text(a: float, b: float, goal: str = "") -> str:
    """'1.04x (+4.0 %)' for B against A."""
    out = f"{b / a:.2f}x ({100 * (b / a - 1):+.1f} %)"
    return f"{out}  goal: {goal}" if goal else out


def load_text() -> str:
    with open("/proc/loadavg") as fh:
        return "load " + " ".join(fh.read().split()[:3])
