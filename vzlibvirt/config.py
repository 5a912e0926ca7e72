"""Host configuration: TOML at /etc/vzlibvirt/vzlibvirt.toml or $VZLIBVIRT_CONFIG.

A missing file means all defaults; unknown keys and wrong types are errors that name the
key, because a typo silently ignored would wire guests in a way nobody asked for.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vzlibvirt import contract
from vzlibvirt.addresses import AddressError, parse_ifname
from vzlibvirt.errors import ConfigError

DEFAULT_PATH = Path(contract.DEFAULT_CONFIG)
ENV_VAR = contract.CONFIG_ENV


@dataclass(frozen=True)
class RoutedConfig:
    gateway4: ipaddress.IPv4Address = ipaddress.IPv4Address(contract.GATEWAY4)
    gateway6: ipaddress.IPv6Address = ipaddress.IPv6Address(contract.GATEWAY6)
    # "detect" | "all" | "none" (a routed-fabric host: no proxy entries) | device names
    neighbour_devs: str | tuple[str, ...] = "detect"
    announce: bool = True
    conflict_probe: bool = True
    probe_timeout_ms: int = 200


@dataclass(frozen=True)
class BridgedConfig:
    bridge: str = "br0"


@dataclass(frozen=True)
class StateConfig:
    dir: Path = Path(contract.DEFAULT_STATE_DIR)


DEFAULT_URIS = contract.DEFAULT_URIS


@dataclass(frozen=True)
class AgentConfig:
    socket: Path = Path(contract.DEFAULT_SOCKET)
    connect: tuple[str, ...] = DEFAULT_URIS  # libvirt URIs whose events the agent follows
    resync_s: int = 10  # period of the drift repair pass; 0 turns it off


@dataclass(frozen=True)
class DhcpConfig:
    """DHCPv4 for routed VMs from a managed dnsmasq (docs/dhcp.md)."""

    enable: bool = False
    interface: str = "vnet*"  # dnsmasq interface pattern: the routed VM taps, never the uplink
    lease_time: int = 3600
    dns_servers: tuple[ipaddress.IPv4Address, ...] = ()


@dataclass(frozen=True)
class Config:
    routed: RoutedConfig = field(default_factory=RoutedConfig)
    bridged: BridgedConfig = field(default_factory=BridgedConfig)
    state: StateConfig = field(default_factory=StateConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    dhcp: DhcpConfig = field(default_factory=DhcpConfig)
    path: Path | None = None

    @property
    def gateways(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv6Address]:
        return (self.routed.gateway4, self.routed.gateway6)


def config_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load_config(path: Path | None = None) -> Config:
    """Read and validate the config; a missing file means defaults."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config(path=None)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    import tomllib  # ~20 ms: only when there is a file to read

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    where = f"config {path}" if path else "config"
    sections = {"routed": _routed, "bridged": _bridged, "state": _state, "agent": _agent,
                "dhcp": _dhcp}
    for key in data:
        if key not in sections:
            raise ConfigError(f"{where}: unknown section or key '{key}'")
    built: dict[str, Any] = {}
    for name, builder in sections.items():
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: '{name}' must be a table")
        try:
            built[name] = builder(section, name)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return Config(path=path, **built)


def _check_keys(section: dict[str, Any], name: str, cls: type) -> None:
    known = {f.name for f in fields(cls)}
    for key in section:
        if key not in known:
            raise ValueError(f"unknown key '{name}.{key}'")


def _typed(section: dict[str, Any], name: str, key: str, kind: type) -> Any:
    value = section[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"'{name}.{key}' must be {kind.__name__}, not {type(value).__name__}")
    return value


def _seconds(section: dict[str, Any], name: str, key: str, lo: int, hi: int,
             low_text: str = "") -> int:
    secs = _typed(section, name, key, int)
    if not lo <= secs <= hi:
        raise ValueError(f"'{name}.{key}' must be between {low_text or lo} and {hi} seconds")
    return secs


def _routed(section: dict[str, Any], name: str) -> RoutedConfig:
    _check_keys(section, name, RoutedConfig)
    kw: dict[str, Any] = {}
    for key, version in (("gateway4", 4), ("gateway6", 6)):
        if key in section:
            text = _typed(section, name, key, str)
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                raise ValueError(f"'{name}.{key}' is not an IP address: {text!r}") from None
            if ip.version != version or ip.is_multicast or ip.is_unspecified:
                raise ValueError(f"'{name}.{key}' must be a unicast IPv{version} address")
            kw[key] = ip
    if "neighbour_devs" in section:
        kw["neighbour_devs"] = _neighbour_devs(section["neighbour_devs"], name)
    for key in ("announce", "conflict_probe"):
        if key in section:
            kw[key] = _typed(section, name, key, bool)
    if "probe_timeout_ms" in section:
        ms = _typed(section, name, "probe_timeout_ms", int)
        if not 1 <= ms <= 10_000:
            raise ValueError(f"'{name}.probe_timeout_ms' must be between 1 and 10000")
        kw["probe_timeout_ms"] = ms
    return RoutedConfig(**kw)


def _neighbour_devs(value: Any, name: str) -> str | tuple[str, ...]:
    if isinstance(value, str) and value in contract.NEIGHBOUR_DEVS_POLICIES:
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        try:
            return tuple(parse_ifname(v, "neighbour device") for v in value)
        except AddressError as exc:
            raise ValueError(f"'{name}.neighbour_devs': {exc}") from None
    raise ValueError(f"'{name}.neighbour_devs' must be \"detect\", \"all\", \"none\" or a "
                     "non-empty list of device names")


def _bridged(section: dict[str, Any], name: str) -> BridgedConfig:
    _check_keys(section, name, BridgedConfig)
    if "bridge" not in section:
        return BridgedConfig()
    try:
        return BridgedConfig(bridge=parse_ifname(_typed(section, name, "bridge", str), "bridge"))
    except AddressError as exc:
        raise ValueError(f"'{name}.bridge': {exc}") from None


def _state(section: dict[str, Any], name: str) -> StateConfig:
    _check_keys(section, name, StateConfig)
    if "dir" not in section:
        return StateConfig()
    text = _typed(section, name, "dir", str)
    if not text.isprintable():  # a NUL would only fail later, in the middle of a hook
        raise ValueError(f"'{name}.dir' must not contain control characters")
    path = Path(text)
    if not path.is_absolute():
        raise ValueError(f"'{name}.dir' must be an absolute path")
    return StateConfig(dir=path)


def driver_of(uri: str) -> str:
    """The domain driver a libvirt URI talks to (qemu or lxc); anything else is refused."""
    from urllib.parse import urlsplit

    scheme = urlsplit(uri).scheme.split("+")[0] if uri.isprintable() else ""
    if scheme not in ("qemu", "lxc"):
        raise ValueError(f"unsupported connection URI {uri!r} (qemu:// or lxc://)")
    return scheme


def _local_uri(uri: str, name: str) -> None:
    """The agent wires this host for what it hears, and the hook shims leave `reconnect`
    to it: its libvirtd must be this host's (a URI without a host part)."""
    from urllib.parse import urlsplit

    driver = driver_of(uri)
    if urlsplit(uri).netloc:
        raise ValueError(f"'{name}.connect' URI {uri!r} names a host: the agent follows "
                         f"this host's libvirtd ({driver}:///system)")


def _agent(section: dict[str, Any], name: str) -> AgentConfig:
    _check_keys(section, name, AgentConfig)
    kw: dict[str, Any] = {}
    if "socket" in section:
        path = Path(_typed(section, name, "socket", str))
        if not path.is_absolute():
            raise ValueError(f"'{name}.socket' must be an absolute path")
        kw["socket"] = path
    if "connect" in section:
        value = section["connect"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"'{name}.connect' must be a list of libvirt URIs")
        for uri in value:
            _local_uri(uri, name)
        if len(set(value)) != len(value):
            raise ValueError(f"'{name}.connect' names a URI twice")
        kw["connect"] = tuple(value)
    if "resync_s" in section:
        kw["resync_s"] = _seconds(section, name, "resync_s", 0, 86_400, "0 (off)")
    return AgentConfig(**kw)


def _dhcp(section: dict[str, Any], name: str) -> DhcpConfig:
    _check_keys(section, name, DhcpConfig)
    kw: dict[str, Any] = {}
    if "enable" in section:
        kw["enable"] = _typed(section, name, "enable", bool)
    if "interface" in section:
        text = _typed(section, name, "interface", str)
        # it lands in dnsmasq's config file: a name with '*' wildcards, nothing else
        if not 1 <= len(text) <= 15 or not all(c.isalnum() or c in "*._-" for c in text):
            raise ValueError(f"'{name}.interface' must be an interface name pattern "
                             f"(letters, digits, '.', '_', '-', '*'; at most 15)")
        kw["interface"] = text
    if "lease_time" in section:  # dnsmasq's minimum is two minutes
        kw["lease_time"] = _seconds(section, name, "lease_time", 120, 31_536_000)
    if "dns_servers" in section:
        value = section["dns_servers"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"'{name}.dns_servers' must be a list of IPv4 addresses")
        try:
            servers = tuple(ipaddress.IPv4Address(v) for v in value)
        except ValueError:
            raise ValueError(f"'{name}.dns_servers' must be a list of IPv4 addresses") from None
        if any(ip.is_unspecified or ip.is_multicast for ip in servers):
            raise ValueError(f"'{name}.dns_servers' must hold unicast addresses")
        kw["dns_servers"] = servers
    return DhcpConfig(**kw)
