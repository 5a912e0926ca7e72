"""Run by test_agent_events inside a test's host namespace: an Agent in this process
(hooks through Agent.handle, as the socket would deliver them), so that a test can
look inside it. Prints one JSON line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from vzlibvirt.agent import Agent  # noqa: E402
from vzlibvirt.config import load_config  # noqa: E402
from vzlibvirt.lab.runner import LIFE  # noqa: E402
from vzlibvirt.netdev import ifindex  # noqa: E402
from vzlibvirt.state import RecordIndex  # noqa: E402

START = [op for op in LIFE if op[0] in ("prepare", "start", "started")]


def hook(agent: Agent, name: str, op: str, sub: str, xml: bytes) -> None:
    rc, err, _ = agent.handle([b"hook", b"", b"lxc", name.encode(), op.encode(),
                               sub.encode(), b"-", xml])
    if rc != b"0":
        raise SystemExit(f"{name} {op}: {err.decode()}")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def proxies() -> str:
    return subprocess.run(["ip", "neigh", "show", "proxy"], capture_output=True,
                          text=True).stdout


def forget(agent: Agent, guests: list[tuple[str, str, bytes]]) -> dict:
    """Wire the guests, forbid any rescan of the state dir, delete the first guest's
    device and let the agent forget it."""
    for name, _dev, xml in guests:
        for op, sub in START:
            hook(agent, name, op, sub, xml)

    def no_rescan(self):
        raise AssertionError("the state directory was rescanned")

    RecordIndex._scan = no_rescan
    _name, dev, _xml = guests[0]
    index = ifindex(dev)
    ip("link", "del", dev)
    forgotten = agent.forget_guest_device(dev, index)
    return {"forgotten": forgotten,
            "left": sorted(r.name for r in agent.store.records()),
            "indexed": sorted(r.name for r in agent.index.all())}


def overflow(agent: Agent, guests: list[tuple[str, str, bytes]]) -> dict:
    """Overflow the agent's link-event socket while the uplink flaps: the flap's events
    are lost, and the agent must still put the proxy entries back."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: lines.append(rec.getMessage())
    logging.getLogger("vzlibvirt").addHandler(handler)
    logging.getLogger("vzlibvirt").setLevel(logging.INFO)
    agent.link_rcvbuf = 4096  # the kernel's minimum-ish: a few messages
    for name, _dev, xml in guests:
        for op, sub in START:
            hook(agent, name, op, sub, xml)
    ip("link", "add", "vzx-spare", "type", "veth", "peer", "name", "vzx-sparep")
    threading.Thread(target=agent._watch_events, daemon=True).start()
    assert agent.watching.wait(10)
    before = proxies()
    with agent.work:  # the watcher blocks in its first piece of work
        ip("link", "del", "vzx-spare")
        time.sleep(0.3)
        batch = "".join(f"link add vzb{i} type veth peer name vzbp{i}\n" for i in range(200))
        subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)
        ip("link", "set", "enp0s5", "down")
        ip("link", "set", "enp0s5", "up")
        flushed = proxies()
    deadline = time.monotonic() + 15
    while proxies() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    after = proxies()
    # the watcher follows events again: a later flap is healed through its event
    ip("link", "set", "enp0s5", "down")
    ip("link", "set", "enp0s5", "up")
    deadline = time.monotonic() + 10
    while proxies() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    agent.stopping.set()
    return {"before": before, "flushed": flushed, "after": after, "again": proxies(),
            "overflow_lines": [ln for ln in lines if "link events lost" in ln],
            "errors": [ln for ln in lines if "netlink events:" in ln
                       and "link events lost" not in ln]}


def main() -> None:
    scenario, config = sys.argv[1], Path(sys.argv[2])
    guests = [(name, dev, Path(xml).read_bytes())
              for name, dev, xml in zip(*[iter(sys.argv[3:])] * 3, strict=True)]
    agent = Agent(load_config(config))
    out = {"forget": forget, "overflow": overflow}[scenario](agent, guests)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
