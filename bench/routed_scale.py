#!/usr/bin/env python3
"""Routed forwarding and neighbour answers at scale: one routed guest alone on its host,
against the same guest on a host with N more routed guests (default 10,000).

Two hosts exist at once (throw-away namespaces, each with Computer X on its LAN) and
the runs alternate between them, so drift of this shared machine hits both alike:
  throughput  iperf3 TCP, Computer X -> the guest's IPv4 address
  ARP         time from X's broadcast ARP request for the guest's IPv4 address to the
              host's proxy reply (the kernel looks the address up among its IPv4 proxy
              entries: 16 hash chains)
  NDP         the same for IPv6: X's neighbour solicitation, the host's proxy advert
Each filler guest is a real veth wired by the engine with one IPv6 address; the first
254 also get an IPv4 address (203.0.113.0/24 is all the test ranges leave), so IPv6
holds the proxy entries at full scale. With --proxy-arp the IPv4 figures are also taken
with the host answering ARP through `proxy_arp` on the uplink and the routing table
instead of per-IP proxy entries (the remedy discussed in docs/performance.md).
Figures are printed, never asserted. Needs root and iperf3.

usage: python bench/routed_scale.py [--guests 10000] [--runs 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.benchlib import iperf, load_text, med, runs_text, wire_routed_fillers  # noqa: E402
from vzlibvirt.contract import AGENT_SOCKET_ENV, NO_AGENT  # noqa: E402
from vzlibvirt.lab.domxml import domain_xml, routed  # noqa: E402
from vzlibvirt.lab.runner import VzCli, in_netns  # noqa: E402
from vzlibvirt.lab.topology import Topology  # noqa: E402

G4, G6 = "198.51.100.50", "2001:db8:100::50"
NEIGH = Path(__file__).resolve().parent / "neigh_latency.py"




def build(tag: str, fillers: int, cleanup: list) -> Topology:
    topo = Topology.throwaway(tag)
    cleanup.append(topo.close)
    work = Path(tempfile.mkdtemp(prefix=f"vzbench-{tag}-", dir="/run"))
    cleanup.append(lambda: shutil.rmtree(work, ignore_errors=True))
    config = work / "vzlibvirt.toml"
    config.write_text(f'[state]\ndir = "{work / "state"}"\n'
                      '[routed]\nneighbour_devs = ["enp0s5"]\nconflict_probe = false\n'
                      'announce = false\n')
    cli = VzCli(config, base_env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    topo.up()
    g = topo.add_guest("g", [G4, G6], host_dev="vg0")
    xml = domain_xml("g", interfaces=[routed(g.mac, [G4, G6], target="vg0", native=True)])
    for op in ("prepare", "started"):
        r = cli.hook("lxc", "g", op, xml, ns=topo.host, timeout=120,
                     **{AGENT_SOCKET_ENV: NO_AGENT})
        if r.rc != 0:
            raise SystemExit(f"vzlibvirt hook {op}: {r.stderr.strip()}")
    if fillers:
        t0 = time.monotonic()
        peers = f"vzt-{tag}-fillers"  # the guests' ends of the fillers' veths
        subprocess.run(["ip", "netns", "add", peers], check=True)
        topo.namespaces.append(peers)
        topo.sysctl(peers, "net.ipv6.conf.default.disable_ipv6", "1")
        subprocess.run(["ip", "netns", "exec", topo.host, sys.executable, __file__, "--fill",
                        str(fillers), "--config", str(config), "--peer-ns", peers],
                       env=cli.env(), check=True, timeout=7200)
        print(f"[{tag}] wired {fillers} routed guests in {time.monotonic() - t0:.0f} s",
              file=sys.stderr)
    return topo


def proxies(topo: Topology) -> tuple[int, int]:
    n4 = len(topo.ip(topo.host, "-4", "neigh", "show", "proxy").splitlines())
    n6 = len(topo.ip(topo.host, "-6", "neigh", "show", "proxy").splitlines())
    return n4, n6


def neigh_times(topo: Topology, target: str, count: int) -> list[float]:
    r = topo.exec(topo.lan, sys.executable, str(NEIGH), "eth0", target, "--count",
                  str(count), check=True, timeout=count + 60)
    return json.loads(r.stdout)


def use_proxy_arp(topo: Topology) -> None:
    """The remedy, applied by hand: no IPv4 proxy entries, `proxy_arp` on the uplink (the
    kernel then answers for any IPv4 address it routes through another device)."""
    topo.sysctl(topo.host, "net.ipv4.conf.enp0s5.proxy_arp", "1")
    for line in topo.ip(topo.host, "-4", "neigh", "show", "proxy").splitlines():
        topo.ip(topo.host, "neigh", "del", "proxy", line.split()[0], "dev", "enp0s5")


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guests", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--probes", type=int, default=2000, help="ARP/NDP requests per block")
    ap.add_argument("--proxy-arp", action="store_true",
                    help="also measure IPv4 answered through proxy_arp instead of entries")
    ap.add_argument("--oif-toggle", action="store_true",
                    help="also measure NDP with the uplink's use_oif_addrs_only flipped")
    ap.add_argument("--json", help="also write the raw figures to this file")
    ap.add_argument("--fill", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--peer-ns", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/routed_scale.py needs root (it builds network namespaces)")
    if args.fill is not None:
        wire_routed_fillers(0, args.fill, Path(args.config), peer_ns=args.peer_ns)
        return 0
    if not shutil.which("iperf3"):
        raise SystemExit("iperf3 is not installed (apt-get install iperf3)")

    cleanup: list = []
    res: dict[str, dict[str, list[float]]] = {"1": {}, "N": {}}
    try:
        hosts = {"1": build(os.urandom(2).hex() + "r1", 0, cleanup),
                 "N": build(os.urandom(2).hex() + "rN", args.guests, cleanup)}
        counts = {k: proxies(t) for k, t in hosts.items()}
        oif = hosts["N"].exec(hosts["N"].host, "sysctl", "-n",
                              "net.ipv6.conf.enp0s5.use_oif_addrs_only").stdout.strip()
        for t in hosts.values():  # warm-up: X learns the guest, TCP caches settle
            t.ping(t.lan, G4)
            iperf(in_netns(t.guests["g"].ns), in_netns(t.lan), G4, 1)
        blocks = [("arp", G4), ("ndp", G6)]
        for _ in range(args.runs):
            for k, t in hosts.items():
                res[k].setdefault("gbit", []).append(
                    iperf(in_netns(t.guests["g"].ns), in_netns(t.lan), G4, args.seconds))
                for name, target in blocks:
                    res[k].setdefault(name, []).extend(
                        neigh_times(t, target, args.probes // args.runs))
        if args.oif_toggle:
            for t in hosts.values():
                key = "net.ipv6.conf.enp0s5.use_oif_addrs_only"
                old = t.exec(t.host, "sysctl", "-n", key, check=True).stdout.strip()
                flipped = "0" if old == "1" else "1"
                t.sysctl(t.host, key, flipped)
            for _ in range(args.runs):
                for k, t in hosts.items():
                    res[k].setdefault(f"ndp_oif_only_{flipped}", []).extend(
                        neigh_times(t, G6, args.probes // args.runs))
        if args.proxy_arp:
            for t in hosts.values():
                use_proxy_arp(t)
            for _ in range(args.runs):
                for k, t in hosts.items():
                    res[k].setdefault("arp_proxy_arp", []).extend(
                        neigh_times(t, G4, args.probes // args.runs))
    finally:
        for fn in reversed(cleanup):
            fn()

    n = args.guests + 1
    print(f"\nrouted guest on a host with 1 vs {n} routed guests ({load_text()} at the end)")
    print(f"  as wired: the uplink's net.ipv6.conf.enp0s5.use_oif_addrs_only = {oif}")
    for k, label in (("1", "1"), ("N", str(n))):
        print(f"  {label:>6} guests: proxy entries IPv4 {counts[k][0]}, IPv6 {counts[k][1]}")
    a, b = res["1"], res["N"]
    print(f"  throughput X -> guest (iperf3 TCP, {args.runs} alternating runs of "
          f"{args.seconds} s, median Gbit/s)")
    print(f"    1: {med(a['gbit']):7.2f}   runs {runs_text(a['gbit'])}")
    print(f"    {n}: {med(b['gbit']):7.2f}   runs {runs_text(b['gbit'])}")
    print(f"    ratio {med(b['gbit']) / med(a['gbit']):.3f}")
    for name, text in (("arp", "ARP request -> proxy reply"),
                       ("ndp", "neighbour solicitation -> proxy advert"),
                       ("ndp_oif_only_0", "NDP with the uplink's use_oif_addrs_only = 0"),
                       ("ndp_oif_only_1", "NDP with the uplink's use_oif_addrs_only = 1"),
                       ("arp_proxy_arp", "ARP, answered through proxy_arp (no entries)")):
        if name not in a:
            continue
        print(f"  {text} (us: median / p10 / p90 of {len(a[name])} and {len(b[name])})")
        for label, xs in (("1", a[name]), (str(n), b[name])):
            print(f"    {label:>6}: {med(xs):7.1f} / {pct(xs, 0.1):7.1f} / {pct(xs, 0.9):7.1f}")
        print(f"    difference of medians: {med(b[name]) - med(a[name]):+.1f} us "
              f"({med(b[name]) / med(a[name]):.3f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"guests": n, "res": res, "proxies": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
