"""kernel_tables' decoding without a kernel: which notifications count as possible
losses (TableEvents), which dump messages are records of a table, and how the end of a
dump is found in a datagram (rtnl.dump_ended)."""

from __future__ import annotations

import errno
import struct

import pytest

from vzlibvirt.kernel_tables import _counts, address_key, proxy_key, route_key
from vzlibvirt.rtnl import (
    IFADDRMSG,
    IFINFOMSG,
    NDMSG,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMSG,
    NetlinkError,
    attr,
    attr_u32,
    dump_ended,
)


def msg(mtype: int, body: bytes, seq: int = 0) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), mtype, 0, seq, 0) + body


def route(mtype: int, dst_len: int) -> bytes:
    return msg(mtype, RTMSG.pack(2, dst_len, 0, 0, 254, 247, 253, 1, 0)
               + attr(1, bytes(dst_len // 8)))


@pytest.mark.parametrize("message, counts", [
    (route(RTM_NEWROUTE, 24), False),  # a router's churn: not a loss of ours
    (route(RTM_NEWROUTE, 32), True),  # a host route replaced, perhaps ours
    (route(RTM_NEWROUTE, 128), True),
    (route(RTM_DELROUTE, 24), True),
    (msg(RTM_NEWADDR, IFADDRMSG.pack(2, 32, 0, 0, 5)), False),
    (msg(RTM_DELADDR, IFADDRMSG.pack(2, 32, 0, 0, 5)), True),
    (msg(RTM_NEWLINK, IFINFOMSG.pack(0, 1, 5, 0, 1)), True),  # went down, perhaps
    (msg(RTM_DELLINK, IFINFOMSG.pack(0, 1, 5, 0, 0)), True),
])
def test_which_notifications_may_be_losses(message, counts):
    assert list(_counts(message)) == [counts]
    assert list(_counts(route(RTM_NEWROUTE, 24) + message)) == [False, counts]


def test_the_end_of_a_dump_is_its_last_message():
    body = route(RTM_NEWROUTE, 32)
    done = msg(NLMSG_DONE, struct.pack("=i", 0), seq=7)
    assert dump_ended(body + body + done, 7)
    assert not dump_ended(body + body, 7)
    assert not dump_ended(body + msg(NLMSG_DONE, struct.pack("=i", 0), seq=6), 7)  # another's
    refused = msg(NLMSG_ERROR, struct.pack("=i", -errno.EINVAL) + bytes(16), seq=7)
    with pytest.raises(NetlinkError) as exc:
        dump_ended(refused, 7)
    assert exc.value.code == errno.EINVAL
    failed = msg(NLMSG_DONE, struct.pack("=i", -errno.EINTR), seq=7)  # a dump cut short
    with pytest.raises(NetlinkError):
        dump_ended(body + failed, 7)


def whole(payload: bytes) -> tuple[bytes, int, int]:
    return payload, 0, len(payload)


def test_route_records_are_host_routes_of_the_main_table():
    def rt(dst_len: int, table: int = 254, proto: int = 247, **extra: bytes) -> bytes:
        dst = bytes([198, 51, 100, 7])[:dst_len // 8]
        return (RTMSG.pack(2, dst_len, 0, 0, table, proto, 253, 1, 0) + attr(1, dst)
                + attr_u32(4, 9) + b"".join(extra.values()))

    assert route_key(*whole(rt(32))) == ("198.51.100.7", 32, 9)
    assert route_key(*whole(rt(32)), protocol=247) == ("198.51.100.7", 32, 9)
    assert route_key(*whole(rt(32, proto=4)), protocol=247) is None  # another protocol
    assert route_key(*whole(rt(24))) is None  # not a host route
    assert route_key(*whole(rt(32, table=100))) is None
    # a table number over 255 is in RTA_TABLE, whatever the header says
    assert route_key(*whole(rt(32, table=252, t=attr_u32(15, 254)))) is not None
    assert route_key(*whole(rt(32, t=attr_u32(15, 1000)))) is None
    v6 = RTMSG.pack(10, 128, 0, 0, 254, 3, 0, 1, 0) + attr(1, bytes(15) + b"\1")
    assert route_key(*whole(v6 + attr_u32(4, 3))) == ("::1", 128, 3)
    assert route_key(*whole(v6)) is None  # no device: not ours to compare


def test_address_and_proxy_records():
    addr = IFADDRMSG.pack(2, 32, 0, 253, 5) + attr(1, bytes([169, 254, 0, 1]))
    assert address_key(*whole(addr)) == (5, "169.254.0.1", 32)
    assert address_key(*whole(IFADDRMSG.pack(2, 24, 0, 0, 5) + attr(1, bytes(4)))) is None
    proxy = NDMSG.pack(10, 6, 0x80, 0x08, 0) + attr(1, bytes(15) + b"\7")
    assert proxy_key(*whole(proxy)) == ("::7", 6)
    assert proxy_key(*whole(NDMSG.pack(10, 6, 0x80, 0, 0) + attr(1, bytes(16)))) is None
