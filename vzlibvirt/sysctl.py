"""Reads and writes of /proc/sys, which are per network namespace like netlink."""

from __future__ import annotations

from pathlib import Path

PROC_SYS = Path("/proc/sys")


def sysctl_path(key: str) -> Path:
    """'net/ipv4/conf/vnet0/proxy_arp' -> its /proc/sys file (device names may hold dots)."""
    return PROC_SYS / key


def read(key: str) -> str | None:
    try:
        return sysctl_path(key).read_text().strip()
    except FileNotFoundError:
        return None


def write(key: str, value: str) -> None:
    sysctl_path(key).write_text(value)


def ensure(key: str, value: str) -> str | None:
    """Set `key` to `value` if it differs; return the previous value when it changed."""
    current = read(key)
    if current is None:
        raise FileNotFoundError(f"sysctl {key.replace('/', '.')} does not exist")
    if current == value:
        return None
    write(key, value)
    return current
