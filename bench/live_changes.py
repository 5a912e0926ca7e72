#!/usr/bin/env python3
"""Live changes (issue 15): what the agent's drift repair costs, and how fast `set` is.

Run as root: `python bench/live_changes.py [--lab]`. Figures are printed, never asserted.
  resync   CPU and wall time of one resync pass over 1,000 routed guests with nothing to
           repair (throw-away namespaces; the guests wired through the engine first), with
           the agent's warm state index and with a cold one; and of a pass that repairs
           every proxy entry after `ip neigh flush proxy`
  set      (--lab, takes the lab's lock) time from starting `vzlibvirt set --ipadd` on a
           running container to Computer X's first ping reply, and how long `set` itself
           ran, median over rounds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def outer_resync(guests: int, rounds: int) -> dict:
    from vzlibvirt.lab.topology import Topology

    topo = Topology.throwaway(tag="bnch" + os.urandom(2).hex())
    try:
        topo.up()
        p = subprocess.run(["ip", "netns", "exec", topo.host, sys.executable, __file__,
                            "--inner", "--guests", str(guests), "--rounds", str(rounds)],
                           stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise SystemExit(p.returncode)
        return json.loads(p.stdout.splitlines()[-1])
    finally:
        topo.close()


def inner(guests: int, rounds: int) -> int:
    from benchlib import wire_routed_fillers

    from vzlibvirt.config import load_config
    from vzlibvirt.netlink import Netlink
    from vzlibvirt.resync import Memory, resync
    from vzlibvirt.state import RecordIndex, StateStore

    work = Path(tempfile.mkdtemp(prefix="vzbench-"))
    config = work / "vzlibvirt.toml"
    config.write_text(f'[state]\ndir = "{work / "state"}"\n[agent]\nconnect = []\n'
                      '[routed]\nneighbour_devs = ["enp0s5"]\nconflict_probe = false\n')
    t0 = time.perf_counter()
    wire_routed_fillers(0, guests, config)
    print(f"wired {guests} guests in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    store = StateStore(load_config(config).state.dir)
    index = RecordIndex(store)
    res: dict = {"guests": guests, "rounds": rounds}
    with Netlink() as nl:
        resync(store, nl, index)  # warms the index as a running agent has it
        memory = Memory()  # as the agent keeps it between passes
        resync(store, nl, index, memory)
        for name, idx, mem in (("agent", index, memory), ("warm", index, None),
                               ("cold", None, None)):
            cpu, wall = [], []
            for _ in range(rounds):
                c0, w0 = time.process_time(), time.perf_counter()
                done = resync(store, nl, idx, mem)
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
                assert not done.repaired, done.repaired[:3]
            res[f"{name}_cpu_ms"] = statistics.median(cpu) * 1000
            res[f"{name}_wall_ms"] = statistics.median(wall) * 1000
            res["checked"] = done.checked
        subprocess.run(["ip", "neigh", "flush", "proxy"], check=True)
        subprocess.run(["ip", "-6", "neigh", "flush", "proxy"], check=True)
        c0, w0 = time.process_time(), time.perf_counter()
        done = resync(store, nl, index)
        res["repair_cpu_ms"] = (time.process_time() - c0) * 1000
        res["repair_wall_ms"] = (time.perf_counter() - w0) * 1000
        res["repaired"] = len(done.repaired)
    print(json.dumps(res))
    return 0


def bench_set(rounds: int) -> dict:
    from vzlibvirt.lab.guests import Guest
    from vzlibvirt.lab.lab import Lab
    from vzlibvirt.lab.lock import lab_lock

    lab = Lab()
    g = Guest("ctbench", "ct", "52:54:00:aa:00:61", ("198.51.100.161",))
    ip = "198.51.100.162"
    firsts, sets = [], []
    with lab_lock(lab.paths):
        lab.up()
        try:
            lab.undefine(g)
            lab.define(g)
            lab.start(g)
            for _ in range(rounds):
                t0 = time.perf_counter()
                r = lab.vz().run("set", g.name, "--ipadd", ip, timeout=120)
                sets.append(time.perf_counter() - t0)
                if r.rc != 0:
                    raise SystemExit(r.stderr)
                while lab.in_lan(["ping", "-c", "1", "-W", "0.05", "-n", ip],
                                 check=False).returncode != 0:
                    if time.perf_counter() - t0 > 10:
                        raise SystemExit("no reply within 10 s")
                firsts.append(time.perf_counter() - t0)
                if lab.vz().run("set", g.name, "--ipdel", ip).rc != 0:
                    raise SystemExit("ipdel failed")
        finally:
            lab.undefine(g)
            lab.down(quiet=True)
    return {"rounds": rounds, "first_reply_ms": statistics.median(firsts) * 1000,
            "set_ms": statistics.median(sets) * 1000,
            "first_reply_max_ms": max(firsts) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--lab", action="store_true", help="also time `set` in the lab")
    parser.add_argument("--no-resync", action="store_true", help="skip the resync part")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        return inner(args.guests, args.rounds)
    if not args.no_resync:
        report_resync(outer_resync(args.guests, args.rounds))
    if args.lab:
        s = bench_set(5)
        print(f"\n`vzlibvirt set --ipadd` on a running container, median of {s['rounds']}: "
              f"first ping reply {s['first_reply_ms']:.0f} ms after the command started "
              f"(max {s['first_reply_max_ms']:.0f} ms); the command ran {s['set_ms']:.0f} ms")
    return 0


def report_resync(r: dict) -> None:
    print(f"\nresync pass, {r['guests']} routed guests ({r['checked']} entries checked), "
          f"nothing to repair, median of {r['rounds']}:")
    print(f"  as the agent runs it (state index and resync memory kept), nothing changed: "
          f"{r['agent_cpu_ms']:.1f} ms CPU, {r['agent_wall_ms']:.1f} ms wall")
    print(f"  warm state index: {r['warm_cpu_ms']:.1f} ms CPU, {r['warm_wall_ms']:.1f} ms wall")
    print(f"  cold state index: {r['cold_cpu_ms']:.1f} ms CPU, {r['cold_wall_ms']:.1f} ms wall")
    print(f"  after `ip neigh flush proxy`: {r['repaired']} entries re-added in "
          f"{r['repair_wall_ms']:.1f} ms ({r['repair_cpu_ms']:.1f} ms CPU)")


if __name__ == "__main__":
    sys.exit(main())
