"""kernel_tables' decoding without a kernel: which notifications count as possible
losses (TableEvents), and how the end of a dump is found in a datagram."""

from __future__ import annotations

import errno
import struct

import pytest

from vzlibvirt.kernel_tables import _counts, _ended
from vzlibvirt.rtnl import (
    IFADDRMSG,
    IFINFOMSG,
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
    attr,
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
    assert _ended(body + body + done, 7)
    assert not _ended(body + body, 7)
    assert not _ended(body + msg(NLMSG_DONE, struct.pack("=i", 0), seq=6), 7)  # another's
    refused = msg(NLMSG_ERROR, struct.pack("=i", -errno.EINVAL) + bytes(16), seq=7)
    with pytest.raises(OSError) as exc:
        _ended(refused, 7)
    assert exc.value.errno == errno.EINVAL
    failed = msg(NLMSG_DONE, struct.pack("=i", -errno.EINTR), seq=7)  # a dump cut short
    with pytest.raises(OSError):
        _ended(body + failed, 7)
