"""Live migration as the LAN sees it: a routed VM (vzlibvirt) and a bridged VM on br0
(QEMU's own announcement), side by side, in the two-host lab (`lab up --hosts 2`).

Computer X pings the guest every 10 ms while `virsh migrate --live --p2p` moves it A -> B
and back; per move: packets lost (and the longest silence), QEMU's reported downtime,
the migration's duration, and the time from libvirt's "resumed (migrated)" event on the
destination to the first reply Computer X gets after it. The goal (issue 14): the routed
VM loses no more than the bridged one. Needs root; takes the lab lock, and the one-host
lab down (both use the machine's libvirt mount points).

usage: python bench/migration_loss.py [--moves 4] [--keep]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vzlibvirt.lab.guests import MIGRATING_BRIDGED_VM, MIGRATING_VMS, Guest  # noqa: E402
from vzlibvirt.lab.lab import Lab  # noqa: E402
from vzlibvirt.lab.lock import lab_lock  # noqa: E402
from vzlibvirt.lab.pingloop import PingLoop  # noqa: E402
from vzlibvirt.lab.sh import wait_for  # noqa: E402
from vzlibvirt.lab.twohosts import TwoHostLab  # noqa: E402

RESUMED = re.compile(r"^(\S+ \S+): event 'lifecycle' for domain '?([^':]+)'?: Resumed Migrated")


def resumed_times(events: subprocess.Popen) -> dict[str, float]:
    """Stop `virsh event --timestamp` and read when each domain resumed (epoch)."""
    events.terminate()
    out, _ = events.communicate(timeout=10)
    times = {}
    for line in out.splitlines():
        m = RESUMED.match(line)
        if m:
            stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f%z")
            times[m.group(2)] = stamp.timestamp()
    return times


def one_move(labs: TwoHostLab, g: Guest, source: Lab) -> dict[str, float]:
    dest = labs.other(source)
    events = subprocess.Popen(["virsh", "-c", dest.paths.uri("qemu"), "event", "--all",
                               "--loop", "--timestamp"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    loop = PingLoop(labs.lan.lan, g.ips[0])
    time.sleep(0.5)
    move = labs.migrate(g.name, source)
    time.sleep(1.5)
    loss = loop.stop()
    resumed = resumed_times(events).get(g.name)
    if not move.ok:
        raise SystemExit(f"{g.name}: migration failed: {move.error}")
    first = loss.first_reply_after(resumed) if resumed else None
    return {"lost": loss.lost, "lost_ms": loss.lost_ms, "gap_ms": loss.longest_gap_ms,
            "downtime_ms": float(move.downtime_ms or 0), "seconds": move.seconds,
            "resumed_to_reply_ms": (first - resumed) * 1000 if first else float("nan")}


def run(labs: TwoHostLab, g: Guest, moves: int) -> list[dict[str, float]]:
    for h in labs.hosts:
        h.undefine(g)
    labs.a.define(g)
    labs.a.start(g)
    if not labs.a.wait_console(g, "VZLAB-READY", 180) or not wait_for(
            lambda: labs.a.ping_from_x(g.ips[0]), 60, 0.5):
        raise SystemExit(f"{g.name} did not come up")
    out, host = [], labs.a
    try:
        for _ in range(moves):
            out.append(one_move(labs, g, host))
            host = labs.other(host)
    finally:
        for h in labs.hosts:
            h.undefine(g)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="leave the two-host lab up")
    args = ap.parse_args()
    labs = TwoHostLab()
    with lab_lock(labs.a.paths):
        Lab().down(quiet=True)
        labs.up()
        try:
            results = {"routed (vzlibvirt)": run(labs, MIGRATING_VMS[0], args.moves),
                       "bridged on br0": run(labs, MIGRATING_BRIDGED_VM, args.moves)}
        finally:
            if not args.keep:
                labs.down(quiet=True)
    print(f"{'guest':20} {'lost':>6} {'lost ms':>8} {'silence ms':>11} {'downtime ms':>12} "
          f"{'resumed->reply ms':>18} {'migration s':>12}   (median of {args.moves} moves)")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"{name:20} {med['lost']:6.0f} {med['lost_ms']:8.0f} {med['gap_ms']:11.0f} "
              f"{med['downtime_ms']:12.0f} {med['resumed_to_reply_ms']:18.1f} "
              f"{med['seconds']:12.2f}")
        for r in rows:
            print(f"{'':20} {r['lost']:6.0f} {r['lost_ms']:8.0f} {r['gap_ms']:11.0f} "
                  f"{r['downtime_ms']:12.0f} {r['resumed_to_reply_ms']:18.1f} "
                  f"{r['seconds']:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
