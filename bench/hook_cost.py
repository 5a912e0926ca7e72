#!/usr/bin/env python3
"""Hook cost: the five calls of one guest life, vzlibvirt against a bare shell hook.

Run as root: `make bench` (or `python bench/hook_cost.py`). Everything happens in
throw-away network namespaces. For each host size (1 guest, then 1,001 and 10,001: the
measured guest plus routed guests wired beforehand, each with its own veth whose other
end is in a guests' namespace) it times, in one run side by side:
  shell   a bare /bin/sh hook doing the routed work with `ip`/`sysctl` (9 commands)
  inproc  vzlibvirt's shim with no agent (the client runs the engine in-process)
  agent   vzlibvirt's shim with the resident agent
each as libvirt runs it: prepare, start, started, stopped, release, XML on stdin,
libvirt's minimal environment, the guest's device deleted before `stopped` (the shell's
and the agent's rounds alternate, so a busy moment of the machine hits both; for the
agent it counts the rounds whose `stopped` still found the guest's record: the agent
had not yet unwired the gone device, so the shim passed the call on); then the
agent's resident memory and its CPU while idle. It also
times `reconcile` of the filler guests, how soon the agent has every proxy entry back
after the uplink comes up, and the `reconnect` hooks of 1,000 of them (a libvirtd start
calls one per running guest before it serves) as they run when the agent does not
follow libvirt's events (here it has no libvirt: `[agent] connect = []`); when it
does, the shim ends `reconnect` and bench/restart_guests.py times that in the lab.
Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.benchlib import wire_routed_fillers  # noqa: E402

GUEST_IP = "198.51.100.250"
RECONNECTS = 1000  # guests whose `reconnect` hook is timed, as a libvirtd start calls it
SHELL_HOOK = """#!/bin/sh
# the bare shell hook: routed wiring of one IP with ip/sysctl, nothing else
DEV=vnb0 IP=@IP@
case "$2" in
started)
    sysctl -qw net.ipv4.ip_forward=1
    sysctl -qw net.ipv4.conf.$DEV.proxy_arp=1
    ip link set $DEV up
    ip addr add 169.254.0.1/32 dev $DEV
    ip route add $IP/32 dev $DEV
    ip neigh add proxy $IP dev enp0s5 ;;
stopped)
    ip neigh del proxy $IP dev enp0s5
    ip route del $IP/32 dev $DEV
    ip addr del 169.254.0.1/32 dev $DEV ;;
esac
exit 0
""".replace("@IP@", GUEST_IP)


def outer(args) -> int:
    from vzlibvirt.lab.topology import Topology

    topo = Topology.throwaway(tag="bench" + os.urandom(2).hex())
    try:
        topo.up()
        peers = f"vzt-{topo.tag}-fillers"  # the guests' ends of the fillers' veths
        subprocess.run(["ip", "netns", "add", peers], check=True)
        topo.namespaces.append(peers)
        topo.sysctl(peers, "net.ipv6.conf.default.disable_ipv6", "1")
        p = subprocess.run(["ip", "netns", "exec", topo.host, sys.executable, __file__,
                            "--inner", "--rounds", str(args.rounds), "--guests",
                            args.guests, "--peer-ns", peers, "--idle-seconds",
                            str(args.idle_seconds), "--settle-seconds",
                            str(args.settle_seconds)], stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            return p.returncode
        report(json.loads(p.stdout.splitlines()[-1]))
    finally:
        topo.close()
    return 0


def report(res: dict) -> None:
    print(f"\nhook cost, five calls per guest life (median of {res['rounds']} rounds, ms)")
    print(f"{'guests on host':>15} {'shell':>8} {'inproc':>8} {'agent':>8} "
          f"{'inproc/shell':>13} {'agent/shell':>12}")
    sizes = sorted(res["sizes"], key=int)
    for n in sizes:
        r = res["sizes"][n]
        print(f"{n:>15} {r['shell']:8.1f} {r['inproc']:8.1f} {r['agent']:8.1f} "
              f"{r['inproc'] / r['shell']:13.2f}x {r['agent'] / r['shell']:11.2f}x")
    for n in sizes:
        per_call = res["sizes"][n]["per_call"]
        ops = list(per_call["shell"])
        print(f"\nper call with {n} guests (medians, ms)\n{'':>8}"
              + "".join(f"{op:>9}" for op in ops))
        for variant, times in per_call.items():
            print(f"{variant:>8}" + "".join(f"{times[op]:9.2f}" for op in ops))
        found = res["sizes"][n].get("stopped_found", {}).get("agent")
        if found is not None:
            print(f"agent: `stopped` found the record still there in {found} of "
                  f"{res['rounds']} rounds")
    for n in sizes:
        r = res["sizes"][n]
        if "rss_mb" in r:
            print(f"agent with {n} guests: resident {r['rss_mb']:.1f} MB, CPU while idle "
                  f"{r['idle_cpu_pct']:.2f} % of one core")
    if len(sizes) > 1:
        a, b = res["sizes"][sizes[0]], res["sizes"][sizes[-1]]
        print(f"growth {sizes[0]} -> {sizes[-1]} guests: shell {b['shell'] / a['shell']:.2f}x, "
              f"inproc {b['inproc'] / a['inproc']:.2f}x, agent {b['agent'] / a['agent']:.2f}x")
    for key, text in (("reconcile_steady_s", "reconcile, {} guests, nothing to do"),
                      ("reconcile_heal_s", "reconcile, {} guests, all proxy entries lost"),
                      ("republish_s", "agent: uplink up -> all {} guests' proxy entries back")):
        if key in res:
            print(f"{text.format(res.get('fillers', '?'))}: {res[key]:.3f} s")
    if "reconnect_s" in res:
        n = res["reconnected"]
        print(f"agent: `reconnect` of {n} wired guests one after another (what a libvirtd "
              f"start adds when the agent does not follow libvirt's events): "
              f"{res['reconnect_s']:.3f} s, "
              f"{res['reconnect_s'] / n * 1000:.2f} ms each")


# ---- inside the host namespace ---------------------------------------------------------

def inner(args) -> int:
    work = Path(tempfile.mkdtemp(prefix="vzbench-"))
    try:
        return _inner(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # 10,000 state records are no souvenir


def _inner(args, work: Path) -> int:
    from vzlibvirt.contract import AGENT_SOCKET_ENV, NO_AGENT, record_path, state_key
    from vzlibvirt.hookinstall import install
    from vzlibvirt.lab.domxml import domain_xml, routed

    sizes = sorted({int(n) for n in args.guests.split(",")})
    state = work / "state"
    sock = work / "agent.sock"
    config = work / "vzlibvirt.toml"
    config.write_text(f'[state]\ndir = "{state}"\n[agent]\nsocket = "{sock}"\n'
                      '[routed]\nneighbour_devs = ["enp0s5"]\nconflict_probe = false\n')
    install(work / "hooks", sys.executable, str(config), str(sock))
    shim = work / "hooks" / "lxc.d" / "50-vzlibvirt"
    shell = work / "shell-hook"
    shell.write_text(SHELL_HOOK)
    shell.chmod(0o755)
    xml = domain_xml("bench", interfaces=[routed("52:54:00:be:00:01", [GUEST_IP],
                                                 target="vnb0", native=True)])
    env_cfg = {"VZLIBVIRT_CONFIG": str(config)}
    uuid = re.search(rb"<uuid>([^<]+)</uuid>", xml).group(1).decode()
    record = record_path(state, state_key("lxc", uuid))
    res: dict = {"rounds": args.rounds, "sizes": {}}
    wired = 1
    fillers: list[bytes] = []
    for n in sizes:
        if n > wired:
            t0 = time.perf_counter()
            fillers += wire_routed_fillers(wired - 1, n - 1, config, peer_ns=args.peer_ns)
            print(f"wired {n - wired} filler guests in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
            wired = n
        row: dict = {"per_call": {}}
        shell_v = ([str(shell)], {})
        got = measure({"inproc": ([str(shim)], {**env_cfg, AGENT_SOCKET_ENV: NO_AGENT})},
                      xml, args.rounds, record)
        agent = start_agent(config, sock)
        try:  # shell and agent rounds alternate, so a busy moment hits both alike
            got |= measure({"shell": shell_v, "agent": ([str(shim)], env_cfg)}, xml,
                           args.rounds, record)
            row.update(agent_idle(agent.pid, args.idle_seconds, args.settle_seconds))
        finally:
            agent.stop(timeout=10)
        row["stopped_found"] = {}
        for variant in ("shell", "inproc", "agent"):
            row[variant], row["per_call"][variant], row["stopped_found"][variant] = got[variant]
        res["sizes"][str(n)] = row
        print(f"{n} guests: {row}", file=sys.stderr)
    if fillers:
        res["fillers"] = len(fillers)
        res.update(reconcile_and_republish(config, sock, fillers, ([str(shim)], env_cfg)))
    print(json.dumps(res))
    return 0


Hook = tuple[list[str], dict[str, str]]  # a hook's command, its environment beyond libvirt's


def call_hook(hook: Hook, name: str, op: str, sub: str, xml: bytes):
    """One call as libvirt makes it: XML on stdin, libvirt's minimal environment."""
    from vzlibvirt.lab.runner import LIBVIRT_ENV

    cmd, extra_env = hook
    p = subprocess.run([*cmd, name, op, sub, "-"], input=xml,
                       env={**LIBVIRT_ENV, **extra_env}, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} {name} {op}: rc={p.returncode} {p.stderr.decode()}")
    return p


def measure(variants: dict[str, Hook], xml: bytes,
            rounds: int, record: Path) -> dict[str, tuple[float, dict[str, float], int]]:
    """{variant: (median time of the five calls, {call: its median}) in ms, and the
    number of timed rounds whose `stopped` found RECORD (the guest's state record) still
    there}, the variants' rounds alternating; each variant is (command, environment
    beyond libvirt's). Between `started` and `stopped` the guest's device is deleted,
    untimed, as libvirt does (the tap / veth is gone when `stopped` runs)."""
    from vzlibvirt.lab.runner import LIFE

    totals: dict[str, list[float]] = {v: [] for v in variants}
    calls = {v: {op: [] for op, _sub in LIFE} for v in variants}
    found = dict.fromkeys(variants, 0)
    for n in range(rounds + 1):
        for variant, hook in variants.items():
            _sh("ip", "link", "add", "vnb0", "type", "veth", "peer", "name", "vnbp0")
            total = 0.0
            for op, sub in LIFE:
                if op == "stopped":
                    _sh("ip", "link", "del", "vnb0")
                    found[variant] += n > 0 and record.exists()
                t0 = time.perf_counter()
                call_hook(hook, "bench", op, sub, xml)
                took = time.perf_counter() - t0
                total += took
                calls[variant][op].append(took)
            totals[variant].append(total)
    # the first round warms caches
    return {v: (statistics.median(totals[v][1:]) * 1000,
                {op: statistics.median(t[1:]) * 1000 for op, t in calls[v].items()}, found[v])
            for v in variants}


def agent_idle(pid: int, seconds: float, settle: float) -> dict:
    """The agent's resident memory after serving the rounds, and its CPU while nothing
    happens for SECONDS (its periodic resync included), after SETTLE seconds in which
    it finishes what the rounds left (its first resync pass, the rescan of the records
    the rounds wrote)."""
    def cpu() -> float:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    with open(f"/proc/{pid}/status") as fh:
        rss = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:"))
    time.sleep(settle)
    c0, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    return {"rss_mb": rss / 1024, "idle_cpu_pct": 100 * (cpu() - c0) / (time.monotonic() - t0)}


def start_agent(config: Path, sock: Path):
    """The resident agent in this (the host) namespace, once it serves its socket."""
    from vzlibvirt.lab.resident import Resident
    from vzlibvirt.lab.runner import VzCli

    return Resident.start(VzCli(config), "agent", log=config.with_name("agent.log"), sock=sock)


def reconcile_and_republish(config: Path, sock: Path, fillers: list[bytes],
                            hook: Hook) -> dict:
    from pyroute2 import IPRoute

    from vzlibvirt.config import load_config
    from vzlibvirt.netlink import Netlink
    from vzlibvirt.reconcile import reconcile

    cfg = load_config(config)
    out = {}
    with Netlink() as nl:
        t0 = time.perf_counter()
        reconcile(cfg, {"lxc": fillers}, nl)
        out["reconcile_steady_s"] = time.perf_counter() - t0
        _sh("ip", "link", "set", "enp0s5", "down")
        _sh("ip", "link", "set", "enp0s5", "up")
        t0 = time.perf_counter()
        r = reconcile(cfg, {"lxc": fillers}, nl)
        out["reconcile_heal_s"] = time.perf_counter() - t0
        assert len(r.rewired) == len(fillers), "reconcile did not re-publish every guest"
    want = _proxy_count()
    agent = start_agent(config, sock)
    time.sleep(2)  # an agent that has been running: its state index is warm
    try:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="enp0s5")[0]
            ipr.link("set", index=idx, state="down")
            assert _proxy_count() == 0
            t0 = time.perf_counter()
            ipr.link("set", index=idx, state="up")
            while _proxy_count() < want:
                if time.perf_counter() - t0 > 30:
                    raise SystemExit("the agent did not re-publish within 30 s")
                time.sleep(0.005)
            out["republish_s"] = time.perf_counter() - t0
        out.update(reconnect_storm(fillers[:RECONNECTS], hook))
    finally:
        agent.stop(timeout=10)
    return out


def reconnect_storm(xmls: list[bytes], hook: Hook) -> dict:
    """What a libvirtd start adds with that many running guests when the agent does not
    follow libvirt's events: libvirt calls the `reconnect` hook of each, one after
    another, before it serves (LXC and QEMU both), and ours re-wires the guest (nothing
    to add on a whole host) through the agent."""
    want = _proxy_count()
    t0 = time.perf_counter()
    for x in xmls:
        name = re.search(rb"<name>([^<]+)</name>", x).group(1).decode()
        call_hook(hook, name, "reconnect", "begin", x)
    took = time.perf_counter() - t0
    if _proxy_count() != want:
        raise SystemExit("the reconnect calls changed the host's proxy entries")
    return {"reconnect_s": took, "reconnected": len(xmls)}


def _proxy_count() -> int:
    """Counted by `ip` (a few ms), so polling does not steal the agent's CPU."""
    out = subprocess.run(["ip", "neigh", "show", "proxy"], capture_output=True, text=True)
    out6 = subprocess.run(["ip", "-6", "neigh", "show", "proxy"], capture_output=True,
                          text=True)
    return len(out.stdout.splitlines()) + len(out6.stdout.splitlines())


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--guests", default="1,1001,10001", help="host sizes, comma-separated")
    parser.add_argument("--idle-seconds", type=float, default=25,
                        help="how long the agent's idle CPU is measured at each size")
    parser.add_argument("--settle-seconds", type=float, default=15,
                        help="wait this long after the rounds before measuring idle CPU "
                             "(the default resync_s is 10)")
    parser.add_argument("--peer-ns", help=argparse.SUPPRESS)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/hook_cost.py needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
