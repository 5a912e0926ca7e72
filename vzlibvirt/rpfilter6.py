"""IPv6 reverse-path filtering for host-routed guests.

IPv4 has `rp_filter`; IPv6 has no such sysctl, so a routed guest could send from any
IPv6 source and the host would forward it. One constant nftables table does the check
for every routed guest device at once: a packet that enters on a device listed in
`routed_ports` must have a source the host routes back through that same device (the
guest's /128, or its link-local on the tap); anything else is dropped. Guests only add
and remove their device's element (entries/nft.py: RoutedPort6), so the per-packet
cost does not grow with guests.
"""

from __future__ import annotations

from vzlibvirt.nftlib import SetTable

RULESET = """
table ip6 vzlibvirt {
  comment "vzlibvirt: IPv6 reverse-path filter for host-routed guests (docs/routed.md)"
  set routed_ports { type iface_index; }
  chain rpcheck {
    ip6 saddr :: return
    fib saddr . iif oif missing counter drop
  }
  chain prerouting {
    type filter hook prerouting priority -150; policy accept;
    iif @routed_ports jump rpcheck
  }
}
"""
TABLE = SetTable("ip6", "vzlibvirt", RULESET)
