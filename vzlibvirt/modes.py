"""The static table of interface modes: which plugin wires a `Mode`.

It sits above the mode modules (routed.py, bridged.py import only the plugin base in
wiring.py), so there is no import circle and nothing registers itself at import time.
"""

from __future__ import annotations

from vzlibvirt.bridged import BridgedWiring
from vzlibvirt.model import Interface, Mode
from vzlibvirt.routed import RoutedWiring
from vzlibvirt.wiring import InterfaceWiring

PLUGINS: dict[Mode, InterfaceWiring] = {
    Mode.ROUTED: RoutedWiring(),
    Mode.BRIDGED: BridgedWiring(),
}


def plugin_for(iface: Interface) -> InterfaceWiring:
    return PLUGINS[iface.mode]
