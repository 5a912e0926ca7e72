"""`routing-config`: the configuration of the host's routing daemon (BIRD 2 or FRR 8.4)
that announces exactly vzlibvirt's guest routes through BGP (docs/bgp.md).

Pure: validated arguments in, configuration text out. vzlibvirt itself does not speak
BGP; a real daemon does, and it recognises our routes by what contract.py gives every
guest route: protocol 247 (BIRD reads it as `krt_source`) and metric 247 (FRR's zebra
drops the protocol of foreign routes and calls them all "kernel", but keeps the metric).
Only host routes (/32, /128) inside the exported prefixes leave the host; nothing is
imported from the peers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from vzlibvirt import contract

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# 0 is invalid, 23456 is AS_TRANS (RFC 6793), 65535 and 2^32-1 are reserved (RFC 7300)
RESERVED_ASNS = (0, 23456, 65535, 4294967295)
HOST_PREFIX = {4: 32, 6: 128}


@dataclass(frozen=True)
class Peer:
    address: IPAddress
    asn: int

    @property
    def version(self) -> int:
        return self.address.version


@dataclass(frozen=True)
class RoutingSpec:
    """What `routing-config` was asked for, checked as a whole."""

    asn: int
    router_id: ipaddress.IPv4Address
    peers: tuple[Peer, ...]
    exports: tuple[IPNetwork, ...]

    def exports_of(self, version: int) -> list[IPNetwork]:
        return [n for n in self.exports if n.version == version]

    def peers_of(self, version: int) -> list[Peer]:
        return [p for p in self.peers if p.version == version]

    @property
    def families(self) -> list[int]:
        return [v for v in (4, 6) if self.exports_of(v)]


def parse_asn(text: str, what: str = "--asn") -> int:
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise ValueError(f"{what} {text!r} is not an AS number (1-4294967294)")
    asn = int(text)
    if asn > 4294967295 or asn in RESERVED_ASNS:
        raise ValueError(f"{what} {text!r} is not a usable AS number (1-4294967294, not "
                         f"23456 or 65535)")
    return asn


def _unicast(ip: IPAddress, what: str, text: str) -> IPAddress:
    if (ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_link_local
            or (ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"))):
        raise ValueError(f"{what} {text!r} must be a global unicast address")
    return ip


def parse_router_id(text: str) -> ipaddress.IPv4Address:
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"--router-id {text!r} is not an IPv4 address (a BGP router ID "
                         f"is 32 bits)") from None
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"--router-id {text!r} must be a unicast IPv4 address")
    return ip


def parse_peer(text: str) -> Peer:
    """IP:ASN, an IPv6 peer as [IP]:ASN (or IP:ASN, split at the last colon)."""
    bad = f"--peer {text!r} is not IP:ASN (an IPv6 peer as [IP]:ASN)"
    if text.startswith("["):
        addr, sep, asn = text[1:].partition("]:")
    else:
        addr, sep, asn = text.rpartition(":")
    if not sep or not addr or not asn:
        raise ValueError(bad)
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise ValueError(bad) from None
    if "%" in addr:
        raise ValueError(f"--peer {text!r}: a scoped address needs an interface; use a "
                         f"global one")
    return Peer(_unicast(ip, "--peer", text), parse_asn(asn, f"--peer {text!r}: AS"))


def parse_export(text: str) -> IPNetwork:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"--export {text!r} is not a prefix: {exc}") from None
    if "/" not in text:
        raise ValueError(f"--export {text!r} needs a prefix length (PREFIX/LEN)")
    addr = net.network_address
    if net.prefixlen and (addr.is_multicast or addr.is_loopback or addr.is_link_local):
        raise ValueError(f"--export {text!r} holds no guest addresses (multicast, loopback "
                         f"or link-local)")
    return net


def build_spec(asn: str, router_id: str, peers: Sequence[str],
               exports: Sequence[str]) -> RoutingSpec:
    """The arguments as given on the command line, checked one by one and together;
    ValueError with a one-line reason."""
    if not peers:
        raise ValueError("at least one --peer IP:ASN is required")
    if not exports:
        raise ValueError("at least one --export PREFIX is required")
    spec = RoutingSpec(parse_asn(asn), parse_router_id(router_id),
                       tuple(parse_peer(p) for p in peers),
                       tuple(parse_export(e) for e in exports))
    seen: set[IPAddress] = set()
    for peer in spec.peers:
        if peer.address in seen:
            raise ValueError(f"--peer {peer.address} is given twice")
        seen.add(peer.address)
    if len(set(spec.exports)) != len(spec.exports):
        dup = next(n for n in spec.exports if spec.exports.count(n) > 1)
        raise ValueError(f"--export {dup} is given twice")
    for v in spec.families:
        if not spec.peers_of(v):
            net = spec.exports_of(v)[0]
            raise ValueError(f"--export {net} has no IPv{v} --peer to announce it to (each "
                             f"session carries its own address family)")
    for v in (4, 6):
        if spec.peers_of(v) and not spec.exports_of(v):
            raise ValueError(f"--peer {spec.peers_of(v)[0].address} has no IPv{v} --export "
                             f"to announce")
    return spec


def _header(spec: RoutingSpec, daemon: str, comment: str) -> list[str]:
    args = [f"--asn {spec.asn}", f"--router-id {spec.router_id}"]
    args += [f"--peer {_peer_arg(p)}" for p in spec.peers]
    args += [f"--export {n}" for n in spec.exports]
    proto, metric = contract.ROUTE_PROTOCOL, contract.ROUTE_METRIC
    return [
        f"{comment} Generated by: vzlibvirt routing-config {daemon} {' '.join(args)}",
        f"{comment} Announces exactly vzlibvirt's guest routes (route protocol {proto}, "
        f"metric {metric}):",
        f"{comment} the /32 and /128 routes inside the exported prefixes. Imports nothing.",
    ]


def _peer_arg(p: Peer) -> str:
    return f"[{p.address}]:{p.asn}" if p.version == 6 else f"{p.address}:{p.asn}"


# -- BIRD 2 ------------------------------------------------------------------------------

def _bird_set(nets: list[IPNetwork]) -> str:
    return ", ".join(f"{n}{{{HOST_PREFIX[n.version]},{HOST_PREFIX[n.version]}}}"
                     for n in nets)


def render_bird(spec: RoutingSpec) -> str:
    """bird.conf for BIRD 2.0: a kernel protocol per family learns the foreign routes of
    protocol 247 inside the prefixes (and writes nothing into the kernel); one BGP
    session per peer exports only what that kernel protocol learned."""
    out = _header(spec, "bird", "#")
    out += ["", "log syslog all;", f"router id {spec.router_id};", ""]
    for v in spec.families:
        out.append(f"define VZLIBVIRT_V{v} = [ {_bird_set(spec.exports_of(v))} ];")
    out += ["", "protocol device {", "}"]
    for v in spec.families:
        out += [
            "",
            f"protocol kernel vzlibvirt{v} {{",
            f"  ipv{v} {{",
            f"    import where krt_source = {contract.ROUTE_PROTOCOL} "
            f"&& net ~ VZLIBVIRT_V{v};",
            "    export none;",
            "  };",
            "  learn;",
            "}",
        ]
    for n, peer in enumerate(spec.peers, start=1):
        v = peer.version
        out += [
            "",
            f"protocol bgp vzlibvirt_peer{n} {{",
            f"  description \"{peer.address} AS{peer.asn}\";",
            f"  local as {spec.asn};",
            f"  neighbor {peer.address} as {peer.asn};",
            f"  ipv{v} {{",
            "    import none;",
            f"    export where proto = \"vzlibvirt{v}\" && net ~ VZLIBVIRT_V{v};",
            "    next hop self;",
            "  };",
            "}",
        ]
    return "\n".join(out) + "\n"


# -- FRR 8.4 -----------------------------------------------------------------------------

def _frr_prefix_entry(seq: int, net: IPNetwork) -> str:
    host = HOST_PREFIX[net.version]
    rng = "" if net.prefixlen == host else f" ge {host} le {host}"
    family = "ip" if net.version == 4 else "ipv6"
    return f"{family} prefix-list VZLIBVIRT-V{net.version} seq {seq} permit {net}{rng}"


def render_frr(spec: RoutingSpec) -> str:
    """frr.conf for FRR 8.4 (zebra + bgpd): zebra sees protocol-247 routes as kernel
    routes; `redistribute kernel` takes only those of metric 247 that a prefix-list of
    /32 and /128 inside the exports permits. Every session has an explicit outbound
    policy (the same prefix-list, `bgp ebgp-requires-policy`) and denies all inbound."""
    out = _header(spec, "frr", "!")
    out += ["! Needs bgpd=yes in /etc/frr/daemons.", "frr defaults traditional",
            "log syslog informational", "!"]
    for v in spec.families:
        for seq, net in enumerate(spec.exports_of(v), start=1):
            out.append(_frr_prefix_entry(seq * 5, net))
    out.append("!")
    for v in spec.families:
        match = "ip" if v == 4 else "ipv6"
        out += [
            f"route-map VZLIBVIRT-KERNEL-V{v} permit 10",
            f" match {match} address prefix-list VZLIBVIRT-V{v}",
            f" match metric {contract.ROUTE_METRIC}",
            "exit",
            "!",
            f"route-map VZLIBVIRT-OUT-V{v} permit 10",
            f" match {match} address prefix-list VZLIBVIRT-V{v}",
            "exit",
            "!",
        ]
    out += ["route-map VZLIBVIRT-IN-NONE deny 10", "exit", "!"]
    out += [
        f"router bgp {spec.asn}",
        f" bgp router-id {spec.router_id}",
        " bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
    ]
    for peer in spec.peers:
        out.append(f" neighbor {peer.address} remote-as {peer.asn}")
    for v in spec.families:
        out += [" !", f" address-family ipv{v} unicast",
                f"  redistribute kernel route-map VZLIBVIRT-KERNEL-V{v}"]
        for peer in spec.peers_of(v):
            out += [
                f"  neighbor {peer.address} activate",
                f"  neighbor {peer.address} next-hop-self",
                f"  neighbor {peer.address} route-map VZLIBVIRT-IN-NONE in",
                f"  neighbor {peer.address} route-map VZLIBVIRT-OUT-V{v} out",
            ]
        out.append(" exit-address-family")
    out += ["exit", "!"]
    return "\n".join(out) + "\n"


RENDERERS = {"bird": render_bird, "frr": render_frr}
