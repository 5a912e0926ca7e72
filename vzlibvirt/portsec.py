"""Port security for bridged guests: one nftables table, elements keyed by port.

The table `bridge vzlibvirt` is constant; guests only add and remove elements:

  map ports      ifindex : jump mac_check | jump ip_check   which ports are filtered, how
  set port_mac   ifindex . MAC                              the MAC each port may send from
  set port_ip4   ifindex . IPv4                             the addresses each port may use
  set port_ip6   ifindex . IPv6                             (mac-ip), own EUI-64 link-local

Every frame entering the bridge costs one hash lookup in `ports` (frames of unfiltered
ports, the uplink's included, stop there); a filtered port's frame costs a few more
lookups in hashed sets. Nothing grows with the number of guests, and removing a guest
removes only its elements. Keys are ifindexes, not names: a name is reused by the next
guest, an ifindex is not, so a leftover element can never apply to another guest.

The ruleset text is a constant in nft's own syntax (readable, reviewed here and in
docs/bridged.md) loaded in one transaction; every element, which carries guest data,
goes through the JSON API so no input is ever spliced into nft syntax. The elements
are entries (entries/nft.py); bridged.py plans which ones a port needs.
"""

from __future__ import annotations

import ipaddress

from vzlibvirt.model import Filter
from vzlibvirt.nftlib import SetTable

FAMILY = "bridge"
TABLE_NAME = "vzlibvirt"
CHAIN_FOR = {Filter.MAC: "mac_check", Filter.MAC_IP: "ip_check"}

RULESET = f"""
table {FAMILY} {TABLE_NAME} {{
  comment "vzlibvirt bridged port security, layout 1 (see docs/bridged.md)"
  map ports {{ type iface_index : verdict; }}
  set port_mac {{ type iface_index . ether_addr; }}
  set port_ip4 {{ type iface_index . ipv4_addr; }}
  set port_ip6 {{ type iface_index . ipv6_addr; }}
  chain mac_check {{
    iif . ether saddr != @port_mac counter drop
    ether type arp iif . arp saddr ether != @port_mac counter drop
  }}
  chain ip_check {{
    jump mac_check
    ether type arp arp saddr ip 0.0.0.0 return
    ether type arp iif . arp saddr ip != @port_ip4 counter drop
    ip saddr 0.0.0.0 udp sport 68 udp dport 67 return
    ether type ip iif . ip saddr != @port_ip4 counter drop
    icmpv6 type nd-router-advert counter drop
    ip6 saddr :: return
    ether type ip6 iif . ip6 saddr != @port_ip6 counter drop
    ether type != {{ arp, ip, ip6 }} counter drop
  }}
  chain prerouting {{
    type filter hook prerouting priority -200; policy accept;
    iif vmap @ports
  }}
}}
"""

TABLE = SetTable(FAMILY, TABLE_NAME, RULESET)


def eui64_link_local(mac: str) -> ipaddress.IPv6Address:
    """The IPv6 link-local address a guest forms from its MAC (modified EUI-64)."""
    b = bytearray(bytes.fromhex(mac.replace(":", "")))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid)
