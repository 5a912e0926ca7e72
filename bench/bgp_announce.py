#!/usr/bin/env python3
"""BGP announcement times (issue 11, docs/bgp.md): how soon the top-of-rack router holds,
or has dropped, a routed guest's /32 (/128) that a host's BIRD announces.

  lab     on the two-host lab's BGP fabric (`lab up --hosts 2 --bgp`: real libvirtds,
          BIRD on the hosts, FRR bgpd as the router): from the start of `virsh start` of a
          routed container on host A (a routed VM on host B) until the router's kernel
          holds every one of its routes, and from the start of `virsh destroy` until it
          holds none. --runs of each. Then the routed VM live-migrated A -> B -> A ...
          (--runs moves): from its resume on the destination (libvirt's event "Resumed
          Migrated", `virsh event --timestamp`) until the router's next hop is the
          destination, and QEMU's downtime.
  scale   in throw-away namespaces (host with BIRD from `routing-config bird`, router with
          FRR): N routed guests (default 1,000; each a real veth with one IPv6 address,
          the first 254 also an IPv4 one) wired by the engine in the host namespace, as
          bench/hook_cost.py wires its fillers, while the router is watched: time until
          it holds all of their routes, and after unwiring them all, until it holds none.

Figures are printed, never asserted. Needs root, bird2 and frr.
usage: python bench/bgp_announce.py [--runs 5] [--guests 1000] [--skip-lab] [--skip-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.benchlib import (  # noqa: E402
    filler_ips,
    load_text,
    med,
    runs_text,
    wire_domains,
    wire_routed_fillers,
)
from vzlibvirt.lab.runner import VzCli, in_netns  # noqa: E402
from vzlibvirt.lab.sh import wait_for  # noqa: E402

HOST_AS, ROUTER_AS = 65001, 65000
HOST4, HOST6 = "198.51.100.2", "2001:db8:100::2"  # the throw-away topology's host
ROUTER4, ROUTER6 = "198.51.100.10", "2001:db8:100::10"  # its LAN namespace: the router
EXPORTS = ("203.0.113.0/24", "2001:db8:f::/64")  # where filler_ips() takes addresses


def router_count(ns: str) -> int:
    """Routes the router installed from BGP (both families)."""
    return sum(len(subprocess.run(["ip", "-n", ns, fam, "route", "show", "proto", "bgp"],
                                  capture_output=True, text=True).stdout.splitlines())
               for fam in ("-4", "-6"))


# ---------- lab: virsh start / destroy to the router ----------
def lab_figures(runs: int) -> None:
    from vzlibvirt.lab.guests import FABRIC_CONTAINER, FABRIC_VM
    from vzlibvirt.lab.lab import Lab
    from vzlibvirt.lab.lock import lab_lock
    from vzlibvirt.lab.twohosts import TwoHostLab

    labs = TwoHostLab(bgp=True)
    with lab_lock(labs.a.paths):
        Lab().down(quiet=True)
        labs.down(quiet=True)
        labs.up()
        try:
            for host, g in ((labs.a, FABRIC_CONTAINER), (labs.b, FABRIC_VM)):
                host.undefine(g)
                host.define(g)
                up, down, virsh_up, virsh_down = [], [], [], []
                for _ in range(runs):
                    t0 = time.monotonic()
                    host.start(g)
                    virsh_up.append(time.monotonic() - t0)
                    if not wait_for(lambda g=g: set(g.ips) <= set(labs.fabric.routes()),
                                    30, 0.01):
                        raise SystemExit(f"{g.name}: the router never learned {g.ips}")
                    up.append(time.monotonic() - t0)
                    time.sleep(1.0)
                    t0 = time.monotonic()
                    host.destroy(g)
                    virsh_down.append(time.monotonic() - t0)
                    if not wait_for(lambda g=g: not set(g.ips) & set(labs.fabric.routes()),
                                    30, 0.01):
                        raise SystemExit(f"{g.name}: the router kept {g.ips}")
                    down.append(time.monotonic() - t0)
                    time.sleep(0.5)
                kind = "container on A" if g.kind == "ct" else "VM on B"
                for verb, total, virsh in (("start", up, virsh_up),
                                           ("destroy", down, virsh_down)):
                    where = "on" if verb == "start" else "off"
                    after = [t - v for t, v in zip(total, virsh, strict=True)]
                    print(f"lab {kind}: virsh {verb} -> {where} the router (all "
                          f"{len(g.ips)} routes): median {med(total):.3f} s  runs "
                          f"{runs_text(total, '{:.3f}')}; of it virsh itself median "
                          f"{med(virsh):.3f} s, after virsh returned median {med(after):.3f} s")
            migration_figures(labs, FABRIC_VM, runs)
            labs.a.undefine(FABRIC_CONTAINER)
            for host in labs.hosts:
                host.undefine(FABRIC_VM)
        finally:
            labs.down(quiet=True)


def migration_figures(labs, g, runs: int) -> None:
    """G (a routed VM, defined on host B by now) live-migrated back and forth."""
    labs.b.undefine(g)
    labs.a.define(g)
    labs.a.start(g)
    if not labs.a.wait_console(g, "VZLAB-READY", 180):
        raise SystemExit(f"{g.name} did not boot")
    ip4 = g.v4[0]
    flips, downtimes = [], []
    source = labs.a
    for _ in range(runs):
        dest = labs.other(source)
        hops = labs.fabric.next_hops(dest)
        # not --domain: the guest does not exist on the destination before the migration
        events = subprocess.Popen(["virsh", "-c", dest.paths.uri("qemu"), "event", "--event",
                                   "lifecycle", "--loop", "--timestamp"],
                                  stdout=subprocess.PIPE, text=True)
        seen: list[tuple[float, str]] = []
        stop = threading.Event()

        def watch(seen=seen, stop=stop) -> None:
            while not stop.is_set():
                seen.append((time.time(), labs.fabric.routes().get(ip4, "")))
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        time.sleep(0.5)  # virsh event has registered
        watcher.start()
        move = labs.migrate(g.name, source)
        time.sleep(1.5)
        stop.set()
        watcher.join()
        events.terminate()
        out, _ = events.communicate(timeout=10)
        if not move.ok:
            raise SystemExit(f"migration failed: {move.error}")
        resumed = next((_stamp(ln) for ln in out.splitlines()
                        if f"'{g.name}'" in ln and "Resumed Migrated" in ln), None)
        flip = next((t for t, hop in seen if hop in hops), None)
        if resumed is None or flip is None:
            raise SystemExit(f"no resume event ({out!r}) or no flip to {hops}")
        flips.append(flip - resumed)
        downtimes.append(float(move.downtime_ms or 0))
        source = dest
    print(f"lab VM migration: resumed on the destination -> router's next hop flipped: "
          f"median {med(flips):.3f} s  runs {runs_text(flips, '{:.3f}')}  (QEMU downtime "
          f"median {med(downtimes):.0f} ms; router polled every ~5 ms)")


def _stamp(line: str) -> float:
    """`virsh event --timestamp`'s '2026-12-01 03:20:00.123+0000: event ...' as epoch."""
    return datetime.strptime(line.split(": event")[0], "%Y-%m-%d %H:%M:%S.%f%z").timestamp()


# ---------- scale: N guests wired by the engine ----------
def scale_figures(n: int) -> None:
    from vzlibvirt.lab.routers import Bird, Frr, Neighbour, router_frr_config
    from vzlibvirt.lab.topology import Topology

    topo = Topology.throwaway(tag="bgpb" + os.urandom(2).hex())
    work = Path(tempfile.mkdtemp(prefix="vzbench-bgp-"))
    try:
        topo.up()
        peers = f"vzt-{topo.tag}-fillers"
        subprocess.run(["ip", "netns", "add", peers], check=True)
        topo.namespaces.append(peers)
        topo.sysctl(peers, "net.ipv6.conf.default.disable_ipv6", "1")
        config = work / "vzlibvirt.toml"
        config.write_text(f'[routed]\nneighbour_devs = "none"\n[state]\ndir = "{work}/state"'
                          '\n')
        r = VzCli(config).run("routing-config", "bird", "--asn", str(HOST_AS), "--router-id",
                              HOST4, "--peer", f"{ROUTER4}:{ROUTER_AS}", "--peer",
                              f"[{ROUTER6}]:{ROUTER_AS}", *(a for e in EXPORTS
                                                            for a in ("--export", e)))
        if r.rc != 0:
            raise SystemExit(r.describe())
        hosts = [Neighbour(HOST4, HOST_AS), Neighbour(HOST6, HOST_AS)]
        want = sum(len(filler_ips(i)) for i in range(n))
        count = lambda: router_count(topo.lan)  # noqa: E731
        with Frr(topo.lan, router_frr_config(ROUTER_AS, ROUTER4, hosts)) as router:
            bird = Bird(topo.host, r.text).start()
            try:
                if not wait_for(router.established, 90, 0.2):
                    raise SystemExit(f"sessions not established: {bird.logs()}")
                inner = subprocess.Popen(
                    [*in_netns(topo.host), sys.executable, __file__, "--inner", str(n),
                     "--config", str(config), "--peer-ns", peers],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                phases = {}
                line = json.loads(inner.stdout.readline())  # {"t0":..., "t1":...}
                if not wait_for(lambda: count() >= want, 600, 0.05):
                    raise SystemExit(f"router has {count()} of {want}")
                phases["announce"] = (line["t0"], line["t1"], time.monotonic())
                burst = restart_bird(bird, router, count, want)
                bird = burst.pop("bird")
                inner.stdin.write("unwire\n")
                inner.stdin.flush()
                line = json.loads(inner.stdout.readline())
                if not wait_for(lambda: count() == 0, 600, 0.05):
                    raise SystemExit(f"router still has {count()}")
                phases["withdraw"] = (line["t0"], line["t1"], time.monotonic())
                inner.wait(timeout=600)
            finally:
                bird.stop()
        for phase, (t0, t1, t2) in phases.items():
            verb = "wired" if phase == "announce" else "unwired"
            have = "holds all" if phase == "announce" else "holds none"
            print(f"scale {n} guests ({want} routes): engine {verb} them in {t1 - t0:.2f} s; "
                  f"router {have} {t2 - t0:.2f} s after the first, {t2 - t1:.2f} s after "
                  f"the last")
        print(f"scale {n} guests: BIRD stopped -> router holds none {burst['down']:.2f} s; "
              f"BIRD started again -> session up {burst['session']:.2f} s, router holds all "
              f"{burst['up']:.2f} s after the start ({burst['up'] - burst['session']:.2f} s "
              "after the session came up)")
    finally:
        topo.close()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def restart_bird(bird, router, count, want: int) -> dict:
    """The burst case: BIRD stopped with every route announced (the router drops them
    all at once), then started again (it announces all of them at once)."""
    t0 = time.monotonic()
    bird.stop()
    if not wait_for(lambda: count() == 0, 300, 0.05):
        raise SystemExit(f"router kept {count()} routes after BIRD stopped")
    down = time.monotonic() - t0
    from vzlibvirt.lab.routers import Bird

    t0 = time.monotonic()
    bird = Bird(bird.ns, bird.config).start()
    if not wait_for(router.established, 120, 0.05):
        raise SystemExit(f"session not back: {bird.logs()}")
    session = time.monotonic() - t0
    if not wait_for(lambda: count() >= want, 300, 0.05):
        raise SystemExit(f"router has {count()} of {want} after BIRD's restart")
    return {"bird": bird, "down": down, "session": session, "up": time.monotonic() - t0}


def inner(n: int, config: Path, peer_ns: str) -> int:
    """In the host namespace: wire N fillers, say when; on 'unwire', unwire them, say when."""
    t0 = time.monotonic()
    xmls = wire_routed_fillers(0, n, config, peer_ns=peer_ns)
    print(json.dumps({"t0": t0, "t1": time.monotonic()}), flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    wire_domains(xmls, config, unwire=True)
    print(json.dumps({"t0": t0, "t1": time.monotonic()}), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--guests", type=int, default=1000)
    ap.add_argument("--skip-lab", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--inner", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--peer-ns", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner is not None:
        return inner(args.inner, args.config, args.peer_ns)
    print(f"# bench/bgp_announce.py  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  "
          f"{os.cpu_count()} cpus  {load_text()}")
    if not args.skip_scale:
        scale_figures(args.guests)
    if not args.skip_lab:
        lab_figures(args.runs)
    print(f"# done  {load_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
