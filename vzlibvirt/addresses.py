"""Validation of guest IP addresses and Linux interface names (pure, no I/O)."""

from __future__ import annotations

import ipaddress
import re

from vzlibvirt.model import IPAddress

# libvirt's virMacAddrParse: six ':'-separated octets of one or two hex digits
_MAC_RE = re.compile(r"^[0-9a-f]{1,2}(:[0-9a-f]{1,2}){5}$")
IFNAMSIZ = 16  # including the trailing NUL: at most 15 characters


class AddressError(ValueError):
    """A value that breaks a rule; the message is the reason, ready for the error line."""


def parse_mac(text: str) -> str:
    """The canonical form (two digits per octet, lower case) of a MAC libvirt accepts."""
    mac = text.strip().lower()
    if not _MAC_RE.match(mac):
        raise AddressError(f"invalid MAC address {text!r}")
    mac = ":".join(octet.zfill(2) for octet in mac.split(":"))
    return mac


def parse_ifname(text: str, what: str) -> str:
    """A Linux interface name: 1-15 bytes, no '/', ':', whitespace or control characters."""
    if not text or len(text.encode()) >= IFNAMSIZ:
        raise AddressError(f"{what} {text!r} is not a valid interface name (1-15 characters)")
    if text in (".", "..") or any(c in text for c in "/:%") or not text.isprintable() or any(
        c.isspace() for c in text
    ):
        raise AddressError(f"{what} {text!r} is not a valid interface name")
    return text


def parse_guest_ip(text: str, gateways: tuple[IPAddress, ...]) -> IPAddress:
    """A unicast host address a guest may own, or AddressError saying why not."""
    raw = text.strip()
    if "/" in raw:
        raise AddressError(f"IP {text!r} must be a plain address without a prefix")
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise AddressError(f"invalid IP address {text!r}") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            raise AddressError(f"IP {text!r} must not carry a scope")
        if ip.ipv4_mapped is not None:
            raise AddressError(f"IP {ip} is an IPv4-mapped address; give the IPv4 address")
    if ip in gateways:  # before the categories: 169.254.0.1 is also link-local
        raise AddressError(f"IP {ip} is the routed gateway address")
    reason = _not_a_host_address(ip)
    if reason:
        raise AddressError(f"IP {ip} is {reason}")
    return ip


def _not_a_host_address(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip == ipaddress.IPv4Address("255.255.255.255"):
            return "the broadcast address"
        if ip in ipaddress.IPv4Network("0.0.0.0/8"):
            return "in 0.0.0.0/8 ('this network')"
        if ip in ipaddress.IPv4Network("240.0.0.0/4"):
            return "a reserved (class E) address"
    return None
