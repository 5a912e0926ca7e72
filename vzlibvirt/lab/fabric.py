"""The two-host lab's BGP fabric (`lab up --hosts 2 --bgp`, docs/bgp.md, docs/lab.md).

The lab's LAN is the transit subnet: the top-of-rack router (namespace vzlab2-rtr, a real
FRR bgpd) joins the LAN bridge as 198.51.100.1, Computer Y sits on a client subnet behind
it, and each lab host (`neighbour_devs = "none"`) runs BIRD in its namespace with the
configuration `vzlibvirt routing-config bird` prints for it. The guests' addresses are in
subnets of their own, so Y reaches them only through the routes the router learned by BGP.
For the other way round (`use("frr")`: FRR on the hosts, BIRD as the router), the same
pieces swap places. The daemons (lab/routers.py) keep their files in the lab dir and
outlive the `lab up` that started them; `down` stops them through their pid files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from . import procs
from . import settings as S
from .lab import Lab
from .routers import (
    Bird,
    Frr,
    Neighbour,
    learned_routes,
    router_bird_config,
    router_frr_config,
)
from .sh import LabError, progress, run, wait_for
from .topology import Topology, netns_exists

DAEMONS = {"bird": Bird, "frr": Frr}
OTHER = {"bird": "frr", "frr": "bird"}


class Fabric:
    def __init__(self, lan: Topology, hosts: Sequence[Lab], root: Path) -> None:
        self.lan = lan  # the two-host lab's LAN topology
        self.hosts = tuple(hosts)
        self.root = root  # /run/vzlibvirt-lab2/bgp
        self.y = f"{lan.prefix}-{S.Y_NAME}"

    # ---------- life cycle ----------
    def exists(self) -> bool:
        return self.root.exists() or netns_exists(S.ROUTER.netns) or netns_exists(self.y)

    def host_daemon(self) -> str:
        """Which daemon the hosts run now ("bird" or "frr"); the router runs the other."""
        try:
            return (self.root / "hosts-run").read_text().strip()
        except OSError:
            return ""

    def healthy(self) -> bool:
        kind = self.host_daemon()
        return kind in DAEMONS and all(d.running() for d in self._handles(kind))

    def up(self, host_daemon: str = "bird") -> None:
        """Router and Computer Y namespaces, the hosts' way back (a default route through
        the router, an administrator's route: never exported), then the daemons."""
        self.root.mkdir(parents=True, exist_ok=True)
        progress(f"BGP fabric: router {S.ROUTER.netns} ({S.ROUTER.address4}, AS "
                 f"{S.ROUTER.asn}) on the LAN, Computer Y {S.Y_IP4} behind it")
        self.lan.join_lan(S.ROUTER)
        self.lan.add_client(S.Y_NAME, S.ROUTER.netns, S.Y_NET4, S.Y_NET6)
        for h in self.hosts:
            h.in_host(["ip", "route", "replace", "default", "via", S.ROUTER.address4])
            h.in_host(["ip", "-6", "route", "replace", "default", "via",
                       S.ROUTER.ip6.split("/")[0]])
        self.start_daemons(host_daemon)

    def start_daemons(self, host_daemon: str = "bird") -> None:
        """HOST_DAEMON on every host, configured by `vzlibvirt routing-config`; the other
        daemon as the router; until every session is established."""
        router_kind = OTHER[host_daemon]
        neighbours = [Neighbour(addr, h.host.asn) for h in self.hosts
                      for addr in (h.host.address4, h.host.ip6.split("/")[0])]
        render = router_frr_config if router_kind == "frr" else router_bird_config
        started = []
        try:
            r = DAEMONS[router_kind](S.ROUTER.netns, render(S.ROUTER.asn, S.ROUTER.address4,
                                                            neighbours), self.root / "router")
            started.append(r.start())
            for h in self.hosts:
                conf = self.routing_config(h, host_daemon)
                started.append(DAEMONS[host_daemon](h.topo.host, conf,
                                                    self.root / h.host.hostname).start())
            (self.root / "hosts-run").write_text(host_daemon + "\n")
            progress(f"BGP fabric: {host_daemon} on the hosts, {router_kind} on the router; "
                     "waiting for the sessions")
            if not wait_for(self.established, timeout=90, interval=0.5):
                raise LabError("BGP sessions not established within 90 s: "
                               + " ".join(d.logs() for d in started))
        except BaseException:
            for d in started:
                d.stop()
            (self.root / "hosts-run").unlink(missing_ok=True)
            raise

    def stop_daemons(self) -> None:
        kind = self.host_daemon()
        if kind in DAEMONS:
            for d in self._handles(kind):
                d.stop()
        (self.root / "hosts-run").unlink(missing_ok=True)

    def use(self, host_daemon: str) -> None:
        """Run HOST_DAEMON on the hosts (and the other as the router) from now on."""
        if self.host_daemon() != host_daemon or not self.healthy():
            self.stop_daemons()
            self.start_daemons(host_daemon)

    def down(self) -> None:
        if self.root.exists():
            self.stop_daemons()
        ids = {i for i in map(procs.netns_id, (S.ROUTER.netns, self.y)) if i}
        if ids:
            procs.kill_all(procs.lab_pids(ids, set()))
        for ns in (self.y, S.ROUTER.netns):
            if netns_exists(ns):
                run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    # ---------- the pieces ----------
    @staticmethod
    def routing_config(host: Lab, daemon: str) -> str:
        """`vzlibvirt routing-config DAEMON` for HOST, exactly as a user runs it there."""
        router6 = S.ROUTER.ip6.split("/")[0]
        r = host.vz().run("routing-config", daemon, "--asn", str(host.host.asn),
                          "--router-id", host.host.address4,
                          "--peer", f"{S.ROUTER.address4}:{S.ROUTER.asn}",
                          "--peer", f"[{router6}]:{S.ROUTER.asn}",
                          "--export", S.FABRIC_EXPORT4, "--export", S.FABRIC_EXPORT6)
        if r.rc != 0:
            raise LabError(f"vzlibvirt routing-config {daemon}: {r.describe()}")
        return r.text

    def _handles(self, host_daemon: str) -> list[Bird | Frr]:
        """Handles on the running daemons (started by this or another process)."""
        return [DAEMONS[OTHER[host_daemon]](S.ROUTER.netns, dir=self.root / "router"),
                *(DAEMONS[host_daemon](h.topo.host, dir=self.root / h.host.hostname)
                  for h in self.hosts)]

    def router(self) -> Bird | Frr:
        kind = self.host_daemon()
        if kind not in DAEMONS:
            raise LabError("the BGP fabric is not up")
        return self._handles(kind)[0]

    def established(self) -> bool:
        """Every session of the router (two per host: IPv4 and IPv6) established."""
        r = self.router()
        if isinstance(r, Frr):
            return r.established() and len(_frr_peers(r)) == 2 * len(self.hosts)
        states = [ln for ln in r.cli("show", "protocols").splitlines() if " BGP " in ln]
        return len(states) == 2 * len(self.hosts) and all("Established" in ln
                                                          for ln in states)

    def routes(self) -> dict[str, str]:
        """The router's kernel routes into the guest subnets ({destination: next hop})."""
        return learned_routes(S.ROUTER.netns)

    def next_hops(self, host: Lab) -> set[str]:
        """The next hops by which the router may reach HOST: its LAN addresses (IPv6 also
        its link-local one, which FRR and BIRD prefer for IPv6 routes)."""
        text = host.in_host(["ip", "-j", "-6", "addr", "show", "dev", S.BRIDGE]).stdout
        local = {a["local"] for link in json.loads(text or "[]")
                 for a in link.get("addr_info", []) if a.get("scope") == "link"}
        return {host.host.address4, host.host.ip6.split("/")[0], *local}

    def show_bgp(self) -> str:
        """The router's BGP table as its operator sees it: `vtysh -c 'show ip bgp'` (and
        the IPv6 table); with BIRD as the router, `birdc show route`."""
        r = self.router()
        if isinstance(r, Frr):
            return r.vtysh("show ip bgp", "show bgp ipv6 unicast")
        return r.cli("show", "route")

    def ping_from_y(self, ip: str, wait: float = 1) -> bool:
        return run(["ip", "netns", "exec", self.y, "ping", "-n", "-c", "1", "-W", str(wait),
                    ip], check=False).returncode == 0


def _frr_peers(r: Frr) -> list[dict]:
    summary = json.loads(r.vtysh("show bgp summary json") or "{}")
    return [p for fam in summary.values() if isinstance(fam, dict)
            for p in fam.get("peers", {}).values()]
