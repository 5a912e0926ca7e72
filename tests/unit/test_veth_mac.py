"""veth_mac's parts that need no kernel: `<guest actual>` parsed, the wait for udev's
database entry, and whether udev sees this namespace's devices. The MAC restore itself
runs on the real kernel (tests/netns/test_veth_mac.py) and against Debian 12's real udev
(tests/system)."""

from __future__ import annotations

import threading
import time

import pytest

from vzlibvirt import veth_mac
from vzlibvirt.domain_xml import parse_domain
from vzlibvirt.errors import VzError
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.model import Driver

MAC = "52:54:00:aa:0d:01"


def start_xml(actual: str) -> bytes:
    """The XML of LXC's `start`: no <target dev>, the container end named in `actual`."""
    xml = domain_xml("ct", interfaces=[routed(MAC, ["198.51.100.5"], native=True)])
    return xml.replace(b'<guest dev="venet0"/>',
                       f'<guest dev="venet0" actual="{actual}"/>'.encode())


def test_start_xml_names_the_container_end():
    dom = parse_domain(start_xml("vnet4"), driver=Driver.LXC, require_uuid=True)
    (iface,) = dom.managed_interfaces
    assert (iface.host_dev, iface.guest_dev, iface.guest_actual) == (None, "venet0", "vnet4")


@pytest.mark.parametrize("bad", ["../x", "a b", "x" * 16, ""])
def test_bad_guest_actual_is_refused(bad):
    with pytest.raises(VzError, match="guest actual"):
        parse_domain(start_xml(bad), driver=Driver.LXC, require_uuid=True)


def test_wait_ends_when_udev_writes_its_entry(tmp_path):
    """udev writes n<ifindex> once its rules (the MAC policy among them) are applied."""
    threading.Timer(0.2, lambda: (tmp_path / "n42").write_text("E:ID_NET_DRIVER=veth\n")).start()
    t0 = time.monotonic()
    assert veth_mac.wait_udev_done(42, str(tmp_path), timeout=5)
    assert 0.15 < time.monotonic() - t0 < 4
    assert not veth_mac.wait_udev_done(43, str(tmp_path), timeout=0.1)  # never handled


def test_no_udev_no_wait(tmp_path):
    assert not veth_mac.udev_sees_devices(str(tmp_path / "control"))
