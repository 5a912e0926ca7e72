#!/usr/bin/env python3
"""Bridged port security, vzlibvirt's against libvirt's own nwfilter, in one lab run.

The lab's libvirtd runs two bridged containers on br0: `nwf-ours` with vzlibvirt's
`filter="mac-ip"` (one nftables table, elements per port) and `nwf-libvirt` with
libvirt's `<filterref filter='clean-traffic'>` and its IP (per-port ebtables chains,
through Debian's default ebtables-nft). The other filtered ports are real veth ports of
br0 whose guest ends are up in a namespace of their own; vzlibvirt filters them through
the engine (as its hooks would for a `type='bridge'` guest), nwfilter through
nwfilter bindings (the object libvirt creates for each filtered guest interface, and
re-applies when libvirtd starts). Only one side's filters exist at a time; for each
size (default 1, 100 and 1,000 filtered ports; nwfilter only up to --nwfilter-max,
since each binding takes libvirt seconds) and side it measures:
  (a) throughput Computer X -> that side's container (iperf3 TCP, several runs)
  (c) `virsh start` of that side's container (destroyed and started again)
and from 2 filtered ports on also
  (b) host CPU while Computer X sends broadcast ARP requests (flooded to every port),
      against the same ports unfiltered
  (d) libvirtd restart (kill; start, until it answers: libvirt re-applies every
      nwfilter binding and runs our `reconnect` hook before it serves)
Figures are printed, never asserted. Needs root and iperf3; takes the lab lock.

usage: python bench/nwfilter_vs_portsec.py [--sizes 1,100,1000] [--runs 3] [--seconds 3]
       [--nwfilter-max 1000] [--restart-max 100] [--sides ours,nwfilter]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.benchlab import (  # noqa: E402
    define,
    guest_xml,
    lab_session,
    plain,
    restart_time,
    timed_start,
)
from bench.benchlib import (  # noqa: E402
    CpuSample,
    bridged_filler_xml,
    iperf,
    load_text,
    med,
    runs_text,
    wire_domains,
)
from vzlibvirt.lab.guests import Guest  # noqa: E402
from vzlibvirt.lab.lab import Lab  # noqa: E402
from vzlibvirt.lab.runner import in_netns  # noqa: E402
from vzlibvirt.lab.settings import BRIDGE, HOST_NETNS, LAN_DEV, LAN_NETNS  # noqa: E402

FILL_NS = "vzt-nwf-fillers"
OURS = Guest("nwf-ours", "ct", "52:54:00:5e:01:51", ("198.51.100.151",), mode="bridged",
             vz_attrs={"filter": "mac-ip"})
LIBVIRT = plain(Guest("nwf-libvirt", "ct", "52:54:00:5e:01:52", ("198.51.100.152",),
                      mode="bridged"))
SIDES = {"ours": OURS, "nwfilter": LIBVIRT}
NOBODY = "198.51.100.250"  # what X's flood asks for: no one answers, every port sees it


def sh(*args: str, input: str | None = None) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, input=input,
                   timeout=600)


def make_ports(n: int) -> None:
    """N veth ports vfI of br0 in the lab host, their guest ends up in FILL_NS."""
    sh("ip", "netns", "add", FILL_NS)
    sh(*in_netns(FILL_NS), "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    sh("ip", "-n", HOST_NETNS, "-batch", "-", input="".join(
        f"link add vf{i} type veth peer name vfp{i} netns {FILL_NS}\n"
        f"link set vf{i} master {BRIDGE}\nlink set vf{i} up\n" for i in range(n)))
    sh("ip", "-n", FILL_NS, "-batch", "-",
       input="".join(f"link set vfp{i} up\n" for i in range(n)))


class Ours:
    """vzlibvirt's port security on filler ports, by the engine inside the lab host with
    its own state dir (the lab's agent never sees these pretend guests)."""

    def __init__(self, work: Path) -> None:
        self.config = work / "vzlibvirt.toml"
        self.config.write_text(f'[state]\ndir = "{work / "state"}"\n[bridged]\n'
                               f'bridge = "{BRIDGE}"\n')
        self.n = 0

    def _run(self, n: int, unwire: bool) -> None:
        sh(*in_netns(HOST_NETNS), sys.executable, __file__, "--wire", str(n), "--config",
           str(self.config), *(["--unwire"] if unwire else []))

    def apply(self, n: int) -> None:
        self._run(n, False)
        self.n = n

    def remove(self) -> None:
        if self.n:
            self._run(self.n, True)
        self.n = 0


class NwFilter:
    """libvirt's nwfilter on filler ports: one binding per port through the API."""

    def __init__(self, lab: Lab) -> None:
        self.n = 0
        self.reconnect(lab)

    def reconnect(self, lab: Lab) -> None:
        """A new connection (after a libvirtd restart)."""
        import libvirt

        self.conn = libvirt.open(lab.paths.uri("lxc"))

    def apply(self, n: int) -> None:
        for i in range(n):
            mac = f"52:54:00:f0:{i >> 8:02x}:{i & 255:02x}"
            self.conn.nwfilterBindingCreateXML(
                f"<filterbinding><owner><name>fake{i}</name>"
                f"<uuid>{uuid.uuid5(uuid.NAMESPACE_DNS, f'fake{i}')}</uuid></owner>"
                f"<portdev name='vf{i}'/><mac address='{mac}'/>"
                f"<filterref filter='clean-traffic'><parameter name='IP' "
                f"value='203.0.113.{i % 254 + 1}'/></filterref></filterbinding>", 0)
            self.n = i + 1

    def remove(self) -> None:
        for i in range(self.n):
            self.conn.nwfilterBindingLookupByPortDev(f"vf{i}").delete()
        self.n = 0


def server_prefix(lab: Lab, g: Guest) -> list[str]:
    return ["nsenter", "-t", str(lab.container_pid(g)), "-n"]


def throughput(lab: Lab, g: Guest, runs: int, seconds: float) -> list[float]:
    return [iperf(server_prefix(lab, g), in_netns(LAN_NETNS), g.ips[0], seconds)
            for _ in range(runs)]


def warm_up(lab: Lab, g: Guest) -> None:
    """Until X reaches G (with 1,000 fresh ports on br0 the first ARP may go unanswered)."""
    for _ in range(10):
        if lab.ping_from_x(g.ips[0], count=1, wait=2):
            break
    iperf(server_prefix(lab, g), in_netns(LAN_NETNS), g.ips[0], 1)


def start_times(lab: Lab, g: Guest, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        lab.destroy(g)
        out.append(timed_start(lab, g))
    return out


def arp_cpu(lab: Lab, rate: float, seconds: float) -> dict[str, float]:
    """Machine CPU while X floods broadcast ARP, minus the same span just before."""
    idle0 = CpuSample.now()
    time.sleep(seconds)
    idle1 = CpuSample.now()
    out = lab.in_lan(["python3", str(Path(__file__).parent / "neigh_latency.py"), LAN_DEV,
                      NOBODY, "--flood", str(rate), "--seconds", str(seconds)],
                     timeout=seconds + 60).stdout
    busy1 = CpuSample.now()
    idle, busy = idle1.percent_since(idle0), busy1.percent_since(idle1)
    # what X got out (a full queue towards the host refuses the rest)
    return {**{k: busy[k] - idle[k] for k in busy},
            "sent_per_s": json.loads(out.splitlines()[-1])["sent"] / seconds}


def ruleset_lines(lab: Lab) -> int:
    return len(lab.in_host(["nft", "list", "ruleset"]).stdout.splitlines())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,100,1000", help="filtered ports, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--arp-rate", type=float, default=100, help="ARP requests per second")
    ap.add_argument("--arp-seconds", type=float, default=20)
    ap.add_argument("--nwfilter-max", type=int, default=100,
                    help="largest size measured for nwfilter (each binding takes seconds)")
    ap.add_argument("--restart-max", type=int,
                    help="largest size at which (d), the libvirtd restart, is measured "
                         "(nwfilter's at 1,000 bindings took over 30 min)")
    ap.add_argument("--sides", default="ours,nwfilter", help="which to measure")
    ap.add_argument("--json", help="also write the raw figures to this file")
    ap.add_argument("--wire", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--unwire", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.wire is not None:
        wire_domains([bridged_filler_xml(i, "mac-ip", BRIDGE) for i in range(args.wire)],
                     Path(args.config), unwire=args.unwire)
        return 0
    if not shutil.which("iperf3"):
        raise SystemExit("iperf3 is not installed (apt-get install iperf3)")
    sizes = sorted({int(x) for x in args.sizes.split(",")})
    top = sizes[-1]
    res: dict = {}
    work = Path(tempfile.mkdtemp(prefix="vzbench-nwf-", dir="/run"))
    try:
        with lab_session() as lab:
            names = lab.virsh("lxc", "nwfilter-list").stdout
            if "clean-traffic" not in names:
                raise SystemExit("the lab's libvirtd has no clean-traffic nwfilter "
                                 "(package libvirt-daemon-config-nwfilter)")
            make_ports(top - 1)
            for side, g in SIDES.items():
                define(lab, g, guest_xml(lab, g, nwfilter=side == "nwfilter"))
                lab.start(g)
                print(f"[{side}] {g.name} started", file=sys.stderr, flush=True)
                warm_up(lab, g)
            sides = {"ours": Ours(work), "nwfilter": NwFilter(lab)}
            res["arp_none"] = arp_cpu(lab, args.arp_rate, args.arp_seconds)
            res["restart_none"] = restart_time(lab)
            sides["nwfilter"].reconnect(lab)
            for n in sizes:
                for side, filt in sides.items():
                    if side not in args.sides.split(",") or (
                            side == "nwfilter" and n > args.nwfilter_max):
                        continue
                    g = SIDES[side]
                    t0 = time.monotonic()
                    filt.apply(n - 1)
                    row = res.setdefault(side, {}).setdefault(n, {})
                    row["apply_s"] = time.monotonic() - t0
                    row["nft_lines"] = ruleset_lines(lab)
                    row["gbit"] = throughput(lab, g, args.runs, args.seconds)
                    row["start_s"] = start_times(lab, g, args.runs)
                    if n > 1:
                        row["arp"] = arp_cpu(lab, args.arp_rate, args.arp_seconds)
                    # shown before the restart, which can take longer than its timeout
                    print(f"[{side} {n}] so far {row}", file=sys.stderr, flush=True)
                    if n > 1 and (args.restart_max is None or n <= args.restart_max):
                        row["restart_s"] = restart_time(lab)
                        sides["nwfilter"].reconnect(lab)
                    t0 = time.monotonic()
                    filt.remove()
                    row["remove_s"] = time.monotonic() - t0
                    print(f"[{side} {n}] {row}", file=sys.stderr, flush=True)
            load = load_text()
    finally:
        subprocess.run(["ip", "netns", "del", FILL_NS], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    report(res, sizes, args, load)
    if args.json:
        Path(args.json).write_text(json.dumps(res, default=str))
    return 0


def report(res: dict, sizes: list[int], args, load: str) -> None:
    o, n = res.get("ours", {}), res.get("nwfilter", {})

    def cell(d: dict, size: int, key: str, fmt: str = "{:.2f}") -> str:
        if key not in d.get(size, {}):
            return "-"
        v = d[size][key]
        return fmt.format(med(v) if isinstance(v, list) else v)

    print(f"\nbridged port security: vzlibvirt filter=mac-ip vs libvirt nwfilter "
          f"clean-traffic (lab, bridged containers on br0, {sizes[-1]} ports present; "
          f"{load} at the end)")
    print(f"(a) throughput Computer X -> guest, iperf3 TCP, median of {args.runs} x "
          f"{args.seconds:g} s, Gbit/s; (c) virsh start of the filtered guest, median, s")
    print(f"{'filtered':>8} {'(a) ours':>9} {'nwfilter':>9} {'(c) ours':>9} {'nwfilter':>9}"
          "   runs (a) ours | nwfilter")
    for s in sizes:
        print(f"{s:>8} {cell(o, s, 'gbit'):>9} {cell(n, s, 'gbit'):>9} "
              f"{cell(o, s, 'start_s'):>9} {cell(n, s, 'start_s'):>9}   "
              f"{runs_text(o[s]['gbit']) if s in o else '-'} | "
              f"{runs_text(n[s]['gbit']) if s in n else '-'}")
    lo = sizes[0]
    for name, d in (("ours", o), ("nwfilter", n)):
        if not d:
            continue
        hi = max(d)
        print(f"    {name}: throughput {hi} / {lo} filtered: "
              f"{med(d[hi]['gbit']) / med(d[lo]['gbit']):.3f}, start "
              f"{med(d[hi]['start_s']) / med(d[lo]['start_s']):.2f}x")
    print(f"(b) CPU above idle while X sends {args.arp_rate:g} broadcast ARP/s for "
          f"{args.arp_seconds:g} s, flooded to {sizes[-1]} ports (per cent of one core)")
    rows = [("none filtered", res["arp_none"])]
    rows += [(f"ours, {s}", o[s]["arp"]) for s in sizes if "arp" in o.get(s, {})]
    rows += [(f"nwfilter, {s}", n[s]["arp"]) for s in sizes if "arp" in n.get(s, {})]
    for label, a in rows:
        print(f"    {label:>15}: softirq {a['softirq']:6.1f} %   system {a['system']:6.1f} %   "
              f"all busy {a['busy']:6.1f} %   (X sent {a.get('sent_per_s', 0):.0f}/s)")

    def restart(r: dict | None) -> str:
        return "-" if r is None else f"{r['stop']:.2f} + {r['start']:.2f} s"

    print("(d) libvirtd restart: kill + start until it answers (libvirt re-applies the "
          f"nwfilter bindings in the start)\n    none filtered: {restart(res['restart_none'])}")
    for s in sizes:
        if "restart_s" in o.get(s, {}) or "restart_s" in n.get(s, {}):
            print(f"    {s:>5} filtered: ours {restart(o.get(s, {}).get('restart_s'))}, "
                  f"nwfilter {restart(n.get(s, {}).get('restart_s'))}")
    print("filtering the other ports (apply / remove, s) and nft ruleset lines:")
    for s in sizes:
        line = f"{s - 1:>7} ports:"
        if s in o:
            line += (f" ours {o[s]['apply_s']:.2f} / {o[s]['remove_s']:.2f} "
                     f"({o[s]['nft_lines']} lines)")
        if s in n:
            line += (f", nwfilter {n[s]['apply_s']:.2f} / {n[s]['remove_s']:.2f} "
                     f"({n[s]['nft_lines']} lines)")
        print(line)


if __name__ == "__main__":
    sys.exit(main())
