"""Guests that change while they run (issue 15), on the real libvirtd with the agent:
`vzlibvirt set` on running containers and VMs, refusals, hot-plugged interfaces, and the
agent's libvirt connection surviving a libvirtd restart."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.helpers import host_routes, proxies, wait_for
from vzlibvirt.contract import XMLNS
from vzlibvirt.lab.guests import Guest
from vzlibvirt.lab.pingloop import PingLoop
from vzlibvirt.lab.runner import Result
from vzlibvirt.lab.settings import HOST_IP4, NEIGH_DEV, X_IP4

CT = Guest("ctlive", "ct", "52:54:00:aa:00:51", ("198.51.100.151",))
NEW = "198.51.100.152"


def vz(lab, *args: str) -> Result:
    """The `vzlibvirt` command as an admin runs it on the lab host (the lab config)."""
    return lab.vz().run(*args, timeout=120)


def ping_loop(lab, ip: str) -> PingLoop:
    """Computer X pings IP every 0.1 s in the background; stop().unanswered() at the end."""
    loop = PingLoop(lab.topo.lan, ip, interval_ms=100)
    time.sleep(0.5)
    return loop


def lost_pings(loop: PingLoop) -> tuple[list[int], int]:
    """(sequence numbers without a reply, how many were judged), a second from now."""
    time.sleep(1)
    loss = loop.stop()
    assert loss.judged() > 10, loss.describe()
    return loss.unanswered(), loss.judged()


def first_reply(lab, ip: str, limit: float = 5.0) -> float | None:
    """Seconds until Computer X gets an answer from IP (None: not within LIMIT)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if lab.in_lan(["ping", "-c", "1", "-W", "0.2", "-n", ip], check=False).returncode == 0:
            return time.monotonic() - t0
    return None


def inside_addrs(lab, g: Guest, dev: str = "venet0") -> set[str]:
    out = lab.in_container(g, ["ip", "-o", "addr", "show", "dev", dev, "scope", "global"]).stdout
    return {f.split("/")[0] for line in out.splitlines()
            for f in [line.split()[3]] if line.split()[2] in ("inet", "inet6")}


def domain_xmls(lab, g: Guest) -> tuple[str, str]:
    return (lab.virsh(g.driver, "dumpxml", "--inactive", g.name).stdout,
            lab.virsh(g.driver, "dumpxml", g.name).stdout)


def test_set_ipadd_ipdel_on_a_running_container(lab, run_guests):
    run_guests(CT)
    pid = lab.container_pid(CT)
    dev = lab.host_dev(CT)
    loop = ping_loop(lab, CT.ips[0])

    r = vz(lab, "set", CT.name, "--ipadd", NEW, "--connect", lab.paths.uri("lxc"))
    assert r.rc == 0, r.stderr
    assert "added 198.51.100.152" in r.text and "(applied)" in r.text
    took = first_reply(lab, NEW)
    assert took is not None and took < 1.0, f"X reached {NEW} after {took} s"
    assert host_routes(lab).get(NEW) == dev
    assert (NEW, NEIGH_DEV) in proxies(lab)
    assert inside_addrs(lab, CT) == {CT.ips[0], NEW}
    assert lab.container_pid(CT) == pid, "the container was restarted"
    shown = json.loads(vz(lab, "show", CT.name, "--json").text)
    assert NEW in shown["live"][0]["ips"] and NEW in shown["config"][0]["ips"]
    assert all(e["present"] for w in shown["wiring"] for e in w["entries"])

    r = vz(lab, "set", CT.name, "--ipdel", NEW)
    assert r.rc == 0, r.stderr
    assert NEW not in host_routes(lab) and (NEW, NEIGH_DEV) not in proxies(lab)
    assert inside_addrs(lab, CT) == {CT.ips[0]}
    assert host_routes(lab).get(CT.ips[0]) == dev and (CT.ips[0], NEIGH_DEV) in proxies(lab)
    assert not lab.ping_from_x(NEW)
    lost, sent = lost_pings(loop)
    assert not lost, f"the first IP lost pings {lost} of {sent} during set"
    assert lab.container_pid(CT) == pid

    # persistent: added again, then a cold restart keeps it (libvirt sets it inside)
    assert vz(lab, "set", CT.name, "--ipadd", NEW).rc == 0
    inactive = lab.virsh("lxc", "dumpxml", "--inactive", CT.name).stdout
    assert f"<ip address='{NEW}' family='ipv4' prefix='32' peer='169.254.0.1'/>" in inactive \
        or f"address='{NEW}'" in inactive
    lab.destroy(CT)
    assert NEW not in host_routes(lab)
    lab.start(CT)
    assert wait_for(lambda: lab.ping_from_x(NEW), 10), "the added IP is gone after a restart"
    assert inside_addrs(lab, CT) == {CT.ips[0], NEW}


def test_set_on_a_running_vm_host_side(lab, run_guests):
    """The VM's init configures both IPs itself; `set` routes and publishes the second."""
    vm = Guest("vmlive", "vm", "52:54:00:bb:00:51", ("198.51.100.251", "198.51.100.252"))
    run_guests(vm)
    assert lab.wait_console(vm, "VZLAB-READY", 120)
    dev = lab.host_dev(vm)
    assert wait_for(lambda: lab.ping_from_x(vm.ips[1]), 15)
    loop = ping_loop(lab, vm.ips[0])

    r = vz(lab, "set", vm.name, "--ipdel", vm.ips[1], "--connect", lab.paths.uri("qemu"))
    assert r.rc == 0, r.stderr
    assert vm.ips[1] not in host_routes(lab) and (vm.ips[1], NEIGH_DEV) not in proxies(lab)
    assert not lab.ping_from_x(vm.ips[1])

    r = vz(lab, "set", vm.name, "--ipadd", vm.ips[1])
    assert r.rc == 0, r.stderr
    took = first_reply(lab, vm.ips[1])
    assert took is not None and took < 1.0, f"X reached {vm.ips[1]} after {took} s"
    assert host_routes(lab).get(vm.ips[1]) == dev
    lost, sent = lost_pings(loop)
    assert not lost, f"the first IP lost pings {lost} of {sent} during set"
    inactive, live = domain_xmls(lab, vm)
    for doc in (inactive, live):  # libvirt keeps metadata as given: either quote style
        assert f"address='{vm.ips[1]}'" in doc or f'address="{vm.ips[1]}"' in doc


def test_set_refusals_change_nothing(lab, run_guests):
    other = Guest("ctother", "ct", "52:54:00:aa:00:52", ("198.51.100.153",))
    run_guests(CT, other)
    xmls = domain_xmls(lab, CT)
    routes, proxy = host_routes(lab), proxies(lab)
    for ip, reason in ((other.ips[0], "already routed to running domain 'ctother'"),
                       (HOST_IP4.split("/")[0], "is an address of this host"),
                       (X_IP4, "already in use on the LAN")):
        r = vz(lab, "set", CT.name, "--ipadd", ip)
        assert r.rc == 1, (ip, r.text, r.stderr)
        assert r.stderr.count("\n") == 1 and reason in r.stderr, r.stderr
        assert f"domain '{CT.name}'" in r.stderr and CT.mac in r.stderr
        assert domain_xmls(lab, CT) == xmls
        assert host_routes(lab) == routes and proxies(lab) == proxy
    assert inside_addrs(lab, CT) == {CT.ips[0]}
    # the same refused change made with virsh alone: the agent logs the line, applies nothing
    log = lab.paths.agent_log
    meta = (f"<network><interface mac='{CT.mac}' mode='routed'>"
            f"<ip address='{HOST_IP4.split('/')[0]}'/></interface></network>")
    lab.virsh("lxc", "metadata", CT.name, XMLNS, "--key", "vz", "--live", "--set", meta)
    line = f"domain '{CT.name}' interface {CT.mac}: IP {HOST_IP4.split('/')[0]} is an address"
    assert wait_for(lambda: line in log.read_text(), 5, 0.1), log.read_text()[-2000:]
    assert host_routes(lab) == routes and proxies(lab) == proxy


HOT_MAC = "52:54:00:ee:00:51"
HOT_IP = "198.51.100.155"


def nic_xml(lab, g: Guest) -> str:
    path = lab.paths.guests / g.name / "hotplug.xml"
    extra = "<guest dev='eth9'/>" if g.kind == "ct" else "<model type='virtio'/>"
    path.write_text(f"<interface type='ethernet'><mac address='{HOT_MAC}'/>{extra}"
                    "</interface>")
    return str(path)


def meta_both(g: Guest, first_ips: tuple[str, ...]) -> str:
    first = "".join(f"<ip address='{ip}'/>" for ip in first_ips)
    return (f"<network><interface mac='{g.mac}' mode='routed'>{first}</interface>"
            f"<interface mac='{HOT_MAC}' mode='routed'><ip address='{HOT_IP}'/></interface>"
            "</network>")


def hot_dev(lab, g: Guest) -> str | None:
    for line in lab.virsh(g.driver, "domiflist", g.name, check=False).stdout.splitlines():
        if HOT_MAC in line:
            return line.split()[0]
    return None


def check_hotplug(lab, g: Guest, order: str) -> None:
    """Attach (metadata first, or `set` after), then detach; the first interface stays."""
    dev0 = lab.host_dev(g)
    before = host_routes(lab).get(g.ips[0])
    xml = nic_xml(lab, g)
    if order == "metadata-first":
        meta = meta_both(g, () if g.kind == "ct" else g.ips)
        lab.virsh(g.driver, "metadata", g.name, XMLNS, "--key", "vz", "--live", "--set", meta)
        lab.virsh(g.driver, "attach-device", g.name, xml, "--live")
        t0 = time.monotonic()
    else:
        lab.virsh(g.driver, "attach-device", g.name, xml, "--live")
        t0 = time.monotonic()
        r = vz(lab, "set", g.name, "--iface", HOT_MAC, "--ipadd", HOT_IP)
        assert r.rc == 0, r.stderr
    assert wait_for(lambda: host_routes(lab).get(HOT_IP), 1.0, 0.02), \
        f"{g.name}: hot-plugged interface not wired within 1 s ({order})"
    wired_after = time.monotonic() - t0
    dev = hot_dev(lab, g)
    assert dev and host_routes(lab)[HOT_IP] == dev and (HOT_IP, NEIGH_DEV) in proxies(lab)
    if g.kind == "ct":
        inside = next(line.split(": ")[1].split("@")[0] for line in lab.in_container(
            g, ["ip", "-o", "link"]).stdout.splitlines() if HOT_MAC in line)
        if order == "metadata-first":  # the test plays the container's own configuration
            lab.in_container(g, ["ip", "addr", "add", f"{HOT_IP}/32", "dev", inside])
            lab.in_container(g, ["ip", "link", "set", inside, "up"])
        else:  # `set` configured the address inside, and brought the device up
            assert inside_addrs(lab, g, inside) == {HOT_IP}
        # a second routed interface: replies from its IP leave through it (the guest's
        # own policy routing, as the lab VM's init does for eth1)
        for cmd in (["rule", "add", "from", HOT_IP, "table", "101"],
                    ["route", "add", "169.254.0.1", "dev", inside, "table", "101"],
                    ["route", "add", "default", "via", "169.254.0.1", "dev", inside,
                     "table", "101"]):
            lab.in_container(g, ["ip", *cmd])
    assert wait_for(lambda: lab.ping_from_x(HOT_IP), 15), f"{g.name}: {HOT_IP} unreachable"
    print(f"{g.name} ({order}): wired {wired_after * 1000:.0f} ms after attach")

    lab.virsh(g.driver, "detach-device", g.name, xml, "--live")
    assert wait_for(lambda: HOT_IP not in host_routes(lab)
                    and (HOT_IP, NEIGH_DEV) not in proxies(lab), 10), \
        f"{g.name}: detached interface's entries stayed"
    assert host_routes(lab).get(g.ips[0]) == before == dev0
    assert (g.ips[0], NEIGH_DEV) in proxies(lab) and lab.ping_from_x(g.ips[0])


@pytest.mark.parametrize("order", ["metadata-first", "set-after"])
def test_hotplug_container(lab, run_guests, order):
    run_guests(CT)
    check_hotplug(lab, CT, order)


@pytest.mark.parametrize("order", ["metadata-first", "set-after"])
def test_hotplug_vm(lab, run_guests, order):
    vm = Guest("vmhot", "vm", "52:54:00:bb:00:52", ("198.51.100.253",), hotplug_ips=(HOT_IP,))
    run_guests(vm)
    assert lab.wait_console(vm, "VZLAB-READY", 120)
    check_hotplug(lab, vm, order)


def test_agent_follows_libvirtd_restart(lab, run_guests):
    run_guests(CT)
    log = lab.paths.agent_log
    uri = lab.paths.uri("lxc")
    follows = log.read_text().count(f"following libvirt events on {uri}")
    lab.restart_libvirtd()
    assert wait_for(lambda: log.read_text().count(f"following libvirt events on {uri}")
                    > follows, 30), "the agent did not reconnect"
    # events flow again: a live metadata change alone is applied by the agent
    meta = (f"<network><interface mac='{CT.mac}' mode='routed'><ip address='{NEW}'/>"
            "</interface></network>")
    lab.virsh("lxc", "metadata", CT.name, XMLNS, "--key", "vz", "--live", "--set", meta)
    assert wait_for(lambda: host_routes(lab).get(NEW), 2, 0.05), \
        "metadata event not applied after the reconnect"
    r = vz(lab, "set", CT.name, "--ipadd", "198.51.100.154")
    assert r.rc == 0, r.stderr
    assert host_routes(lab).get("198.51.100.154") == lab.host_dev(CT)
    assert wait_for(lambda: lab.ping_from_x("198.51.100.154"), 5)


def test_proxy_flush_repaired_within_one_resync_period(lab, run_guests):
    run_guests(CT)
    assert (CT.ips[0], NEIGH_DEV) in proxies(lab)
    lab.in_host(["ip", "neigh", "flush", "proxy", "dev", NEIGH_DEV])
    t0 = time.monotonic()
    assert (CT.ips[0], NEIGH_DEV) not in proxies(lab)
    assert wait_for(lambda: (CT.ips[0], NEIGH_DEV) in proxies(lab), 3 + 1, 0.05), \
        "not repaired within one resync period (3 s in the lab)"
    print(f"proxy entry back {time.monotonic() - t0:.2f} s after the flush")
    assert lab.ping_from_x(CT.ips[0])


def test_guest_stopped_without_its_hook_is_unwired(lab, run_guests):
    """Safety net: the `stopped`/`release` hooks never run (the shim is missing), yet the
    agent unwires the container (its devices vanish, libvirt reports it stopped)."""
    run_guests(CT)
    assert host_routes(lab).get(CT.ips[0])
    shim = lab.paths.hooks / "lxc.d" / "50-vzlibvirt"
    aside = shim.with_name("50-vzlibvirt.aside")
    shim.rename(aside)
    try:
        calls = len(lab.hook_calls())
        lab.destroy(CT)
        assert wait_for(lambda: CT.ips[0] not in host_routes(lab)
                        and (CT.ips[0], NEIGH_DEV) not in proxies(lab), 3, 0.05)
        assert any(" stopped end" in c for c in lab.hook_calls()[calls:])  # the probe ran
        assert not list((lab.paths.state / "domains").glob("lxc-*.json"))
    finally:
        aside.rename(shim)
