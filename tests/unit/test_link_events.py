"""link_events: decoding link messages by hand, and the agent's LinkTracker turning
events (or a dump after lost events) into work."""

from __future__ import annotations

import struct

from vzlibvirt import link_events as le
from vzlibvirt.link_events import IFF_LOWER_UP, IFF_UP, LinkEvent, LinkTracker, parse_link

UP = IFF_UP | IFF_LOWER_UP


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def ifinfo(index: int, flags: int, name: str, kind: str | None = None) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0) + attr(4, b"\x00\x05\x00\x00")
    body += attr(le.IFLA_IFNAME, name.encode() + b"\0")
    if kind is not None:  # nested, with the flag the kernel sets
        body += attr(le.IFLA_LINKINFO | 0x8000, attr(le.IFLA_INFO_KIND, kind.encode()))
    return body


def test_parse_link_reads_index_flags_name_and_kind():
    data = b"pad!" + ifinfo(42, UP, "vnet7", "veth")
    assert parse_link(data, 4, len(data)) == LinkEvent(42, "vnet7", UP, "veth")
    data = ifinfo(3, 0, "enp0s5")
    assert parse_link(data, 0, len(data), gone=True) == LinkEvent(3, "enp0s5", 0, None, True)
    assert parse_link(data, 0, 8) is None  # truncated: not a link


def test_tracker_up_again_gone_and_new():
    tracker = LinkTracker({2: LinkEvent(2, "enp0s5", UP, None),
                           5: LinkEvent(5, "vnet0", UP, "veth")})
    work = tracker.feed([LinkEvent(2, "enp0s5", IFF_UP, None),  # carrier lost
                         LinkEvent(9, "vnet1", 0, "veth")])  # a new veth
    assert work.up_again == [] and work.gone == [] and work.new_veths == ["vnet1"]
    work = tracker.feed([LinkEvent(2, "enp0s5", UP, None),
                         LinkEvent(9, "vnet1", UP, "veth"),  # first up: not again
                         LinkEvent(5, "", 0, None, gone=True)])  # the name we knew
    assert work.up_again == ["enp0s5"]
    assert work.gone == [("vnet0", 5)]
    assert work.new_veths == []


def test_tracker_makes_up_lost_events_from_a_dump():
    tracker = LinkTracker({2: LinkEvent(2, "enp0s5", UP, None),
                           5: LinkEvent(5, "vnet0", UP, "veth"),
                           6: LinkEvent(6, "vnet1", IFF_UP, "veth")})
    now = {2: LinkEvent(2, "enp0s5", UP, None), 6: LinkEvent(6, "vnet1", UP, "veth"),
           7: LinkEvent(7, "vnet2", UP, "veth")}
    work = tracker.feed(tracker.missed(now))
    assert work.gone == [("vnet0", 5)]
    assert work.new_veths == ["vnet2"]
    assert work.up_again == []  # vnet1 was never up: new, its hook wires it
