"""`vzlibvirt hook network NAME OP SUBOP -`: libvirt's network hook, XML in <hookData>.

Only `start` of a bridge-mode network has something to check: that its bridge exists,
so that guests on the network do not fail later with a less helpful message.
"""

from __future__ import annotations

from vzlibvirt import netdev
from vzlibvirt.errors import VzError, missing_bridge_error


def run_network_hook(name: str, op: str, data: bytes) -> int:
    if op != "start":
        return 0
    from vzlibvirt.domain_xml import parse_xml_bytes

    root = parse_xml_bytes(data)
    network = root if root.tag == "network" else root.find("network")
    if network is None:
        raise VzError(f"network '{name}': no <network> in the hook's XML")
    forward = network.find("forward")
    if forward is None or forward.get("mode") != "bridge":
        return 0
    bridge_el = network.find("bridge")
    bridge = bridge_el.get("name") if bridge_el is not None else None
    if bridge and not netdev.exists(bridge):
        raise VzError(f"network '{name}': {missing_bridge_error(bridge)}")
    return 0
