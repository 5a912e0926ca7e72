"""The netlink layer's hand-packed requests (rtnl.py, netlink.py) on the real kernel,
each checked against what `ip` and pyroute2 (the reference the layer replaced on the hot
path) see: links, addresses, routes, proxy and ordinary neighbours, bridge ports and
their FDB, the kernel's refusals, and the bulk view's dumps."""

from __future__ import annotations

import json
import sys

import pytest

pytestmark = pytest.mark.netns

SCRIPT = r"""
import errno, json, socket, subprocess, sys
from pyroute2 import IPRoute
from vzlibvirt.netlink import Netlink, NetlinkError, error_text
from vzlibvirt.netlink_bulk import BulkView

out = {}
with Netlink() as nl, IPRoute() as ipr:
    ref = lambda name: ipr.link_lookup(ifname=name)[0]
    up, v1, br = ref("enp0s5"), ref("vnr1"), ref("brr0")
    link = nl.link("vnr1")
    out["link"] = [link.index, link.name, link.up, link.mac, link.mtu, link.master, link.kind]
    out["by_index"] = nl.link_by_index(v1) == link
    out["missing"] = [nl.link("nosuchdev"), nl.link_by_index(999999)]
    out["links"] = sorted((l.name, l.kind) for l in nl.links() if l.name.startswith("vnr"))

    nl.set_up(v1)
    nl.set_mac(v1, "52:54:00:aa:77:01")
    nl.set_mtu(v1, 1400)
    out["changed"] = [nl.link("vnr1").up, nl.link("vnr1").mac, nl.link("vnr1").mtu]

    out["addr"] = [nl.addr_add(v1, "169.254.0.1", 32, 4), nl.addr_add(v1, "169.254.0.1", 32, 4),
                   nl.addr_add(v1, "fe80::1", 128, 6),
                   nl.addr_present(v1, "169.254.0.1", 32), nl.addr_present(v1, "169.254.0.1", 24),
                   nl.addr_present(up, "169.254.0.1", 32), nl.addr_present(v1, "fe80::1", 128)]
    out["addresses"] = sorted(a[:3] for a in nl.addresses() if a[0] == v1)
    out["addresses6"] = sorted(a[:3] for a in nl.addresses(6) if a[0] == v1)

    out["route"] = [nl.route_add("198.51.100.77", 32, v1), nl.route_add("198.51.100.77", 32, v1),
                    nl.route_add("2001:db8:77::7", 128, v1),
                    nl.route_present("198.51.100.77", 32, v1),
                    nl.route_present("198.51.100.77", 32, up),
                    nl.route_present("198.51.100.78", 32, v1)]
    got = nl.route_get("198.51.100.77")
    out["route_get"] = [got.oif, got.dst_len, got.gateway, got.table, got.protocol, got.type]
    r = ipr.route("get", dst="198.51.100.77")[0]
    out["route_get_ref"] = [r.get_attr("RTA_OIF"), r["dst_len"], r.get_attr("RTA_GATEWAY"),
                            r.get_attr("RTA_TABLE"), r["proto"], r["type"]]
    via = nl.route_get("203.0.113.200")
    out["route_get_gw"] = [via.oif, via.gateway]
    m = nl.route_match("198.51.100.77", 32)
    out["route_match"] = [m.oif, m.dst_len, m.protocol]
    out["route_match_lan"] = nl.route_match("198.51.100.99", 32)
    out["route_unreachable"] = nl.route_get("2001:db8:ffff::1")
    out["routes_ref"] = sorted([r.get_attr("RTA_DST"), r["dst_len"], r.get_attr("RTA_OIF"),
                                r["proto"], r.get_attr("RTA_PRIORITY")]
                               for fam in (socket.AF_INET, socket.AF_INET6)
                               for r in ipr.get_routes(family=fam, table=254)
                               if r.get_attr("RTA_OIF") == v1 and r["dst_len"] in (32, 128)
                               and r.get_attr("RTA_DST") != "fe80::1")

    out["pneigh"] = [nl.pneigh_present("198.51.100.77", up), nl.pneigh_add("198.51.100.77", up),
                     nl.pneigh_add("2001:db8:77::7", up),
                     nl.pneigh_present("198.51.100.77", up), nl.pneigh_present("198.51.100.77", v1),
                     nl.pneigh_present("2001:db8:77::7", up)]
    bulk = BulkView(nl)
    out["bulk"] = [("198.51.100.77", up) in bulk._pneigh, ("2001:db8:77::7", up) in bulk._pneigh,
                   ("198.51.100.77", 32, v1) in bulk._routes,
                   (v1, "169.254.0.1", 32) in bulk._addrs]
    out["bulk_ref"] = [
        sorted(bulk._pneigh) == sorted((m.get_attr("NDA_DST"), m["ifindex"])
                                       for fam in (socket.AF_INET, socket.AF_INET6)
                                       for m in ipr.neigh("dump", family=fam, flags=0x08,
                                                          dump_filter=lambda _m: True)),
        sorted(bulk._addrs) == sorted((m["index"], m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                                      for m in ipr.get_addr()),
        len(bulk.links()) == len(ipr.get_links())]

    out["del"] = [nl.pneigh_del("198.51.100.77", up), nl.pneigh_del("198.51.100.77", up),
                  nl.route_del("198.51.100.77", 32, v1), nl.route_del("198.51.100.77", 32, v1),
                  nl.addr_del(v1, "169.254.0.1", 32), nl.addr_del(v1, "169.254.0.1", 32),
                  nl.pneigh_present("198.51.100.77", up), nl.route_present("198.51.100.77", 32, v1)]
    ipr.neigh("add", dst="198.51.100.9", lladdr="52:54:00:aa:77:09", ifindex=up, state=0x02)
    out["forget"] = [nl.neigh_forget("198.51.100.9", up), nl.neigh_forget("198.51.100.9", up)]

    nl.set_master(v1, br)
    out["port"] = [nl.link("vnr1").master == br, nl.brport_isolated(v1), nl.brport_isolated(up)]
    nl.set_brport_isolated(v1, True)
    out["isolated"] = nl.brport_isolated(v1)
    subprocess.run(["bridge", "fdb", "add", "52:54:00:aa:77:0a", "dev", "vnr1", "master",
                    "static"], check=True)
    out["fdb"] = [nl.fdb_ports(br, "52:54:00:aa:77:0a") == {v1},
                  nl.fdb_ports(br, "52:54:00:AA:77:0A") == {v1},
                  sorted(nl.fdb_ports(br, "52:54:00:aa:77:0b"))]
    out["vlan_filtering"] = nl._vlan_filtering(br)
    # the dump branch (a VLAN-filtering bridge); this kernel has no VLAN filtering to set
    nl._vlan_filtering = lambda _index: True
    out["fdb_vlan"] = nl.fdb_ports(br, "52:54:00:aa:77:0a") == {v1}
    nl.set_master(v1, None)
    out["released"] = nl.link("vnr1").master

    try:
        nl.route_add("198.51.100.79", 32, 999999)
    except NetlinkError as exc:
        out["refused"] = errno.errorcode[exc.code]
    out["after_refusal"] = nl.link("vnr1").name  # the socket is still in step
    out["errors"] = error_text(NetlinkError(errno.ENODEV))
print(json.dumps(out))
"""


def test_requests_match_the_kernel_and_pyroute2(topo):
    h = topo.host
    topo.ip(h, "link", "add", "vnr1", "type", "veth", "peer", "name", "vnr2")
    topo.ip(h, "link", "add", "brr0", "type", "bridge")
    topo.ip(h, "route", "add", "203.0.113.0/24", "via", "198.51.100.1")
    ref = {d["ifname"]: d for d in json.loads(topo.ip(h, "-j", "-d", "link", "show"))}
    r = topo.exec(h, sys.executable, "-c", SCRIPT, check=True)
    got = json.loads(r.stdout)
    v1, up, br = (ref[n]["ifindex"] for n in ("vnr1", "enp0s5", "brr0"))

    assert got["link"] == [v1, "vnr1", False, ref["vnr1"]["address"], 1500, None, "veth"]
    assert got["by_index"] is True
    assert got["missing"] == [None, None]
    assert got["links"] == [["vnr1", "veth"], ["vnr2", "veth"]]
    assert got["changed"] == [True, "52:54:00:aa:77:01", 1400]

    assert got["addr"] == [True, False, True, True, False, False, True]
    assert ["169.254.0.1", 32] in [[a[1], a[2]] for a in got["addresses"]]
    assert [a[1] for a in got["addresses6"]] .count("fe80::1") == 1
    assert all(a[1].count(":") for a in got["addresses6"])

    assert got["route"] == [True, False, True, True, False, False]
    # protocol and metric from contract.py, as pyroute2 reads them back
    from vzlibvirt import contract

    assert got["routes_ref"] == sorted([
        ["198.51.100.77", 32, v1, contract.ROUTE_PROTOCOL, contract.ROUTE_METRIC],
        ["2001:db8:77::7", 128, v1, contract.ROUTE_PROTOCOL, contract.ROUTE_METRIC]])
    assert got["route_get"] == got["route_get_ref"]
    assert got["route_get"][:4] == [v1, 32, None, 254]
    assert got["route_get_gw"] == [up, "198.51.100.1"]
    assert got["route_match"] == [v1, 32, contract.ROUTE_PROTOCOL]
    assert got["route_match_lan"] is None  # only the LAN's /24 matches
    assert got["route_unreachable"] is None

    assert got["pneigh"] == [False, True, True, True, False, True]
    assert got["bulk"] == [True, True, True, True]
    assert got["bulk_ref"] == [True, True, True]
    assert got["del"] == [True, False, True, False, True, False, False, False]
    assert got["forget"] == [True, False]
    assert "198.51.100.77" not in topo.ip(h, "neigh", "show", "proxy")

    assert got["port"] == [True, False, None]
    assert got["isolated"] is True
    assert got["fdb"] == [True, True, []]
    assert got["vlan_filtering"] is False
    assert got["fdb_vlan"] is True
    assert got["released"] is None
    assert got["refused"] == "ENODEV"
    assert got["after_refusal"] == "vnr1"
    assert got["errors"] == "No such device (ENODEV)"
    assert br != v1
