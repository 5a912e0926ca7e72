"""Host configuration: the contract's TOML, VZLIBVIRT_CONFIG, defaults, and refusals."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from vzlibvirt.config import (
    DEFAULT_PATH,
    ENV_VAR,
    Config,
    config_path,
    load_config,
    parse_config,
)
from vzlibvirt.errors import ConfigError, VzError

# The contract's example (design.md, "Host configuration"), copied exactly.
CONTRACT_TOML = """\
[routed]
gateway4 = "169.254.0.1"
gateway6 = "fe80::1"
neighbour_devs = "detect"     # "detect" | "all" | ["enp0s5", ...]
announce = true               # gratuitous ARP / unsolicited NA after wiring
conflict_probe = true         # ARP/NS probe on the neighbour devs before claiming an IP
probe_timeout_ms = 200

[bridged]
bridge = "br0"

[state]
dir = "/run/vzlibvirt"        # what was applied, per domain, so stop removes exactly that
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "vzlibvirt.toml"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def refusal(tmp_path: Path, text: str | bytes) -> str:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    line = info.value.line()
    assert "\n" not in line and line.isprintable() and line.startswith("vzlibvirt: ")
    assert str(p) in line  # says which file
    return line


def test_contract_example_equals_the_defaults(tmp_path):
    p = write(tmp_path, CONTRACT_TOML)
    cfg = load_config(p)
    assert cfg == Config(path=p)
    assert cfg.routed.gateway4 == ipaddress.IPv4Address("169.254.0.1")
    assert cfg.routed.gateway6 == ipaddress.IPv6Address("fe80::1")
    assert cfg.routed.neighbour_devs == "detect"
    assert cfg.routed.announce is True and cfg.routed.conflict_probe is True
    assert cfg.routed.probe_timeout_ms == 200
    assert cfg.bridged.bridge == "br0"
    assert cfg.state.dir == Path("/run/vzlibvirt")
    assert cfg.gateways == (cfg.routed.gateway4, cfg.routed.gateway6)


def test_missing_file_means_defaults(tmp_path):
    cfg = load_config(tmp_path / "absent.toml")
    assert cfg == Config() and cfg.path is None


def test_empty_file_means_defaults(tmp_path):
    p = write(tmp_path, "")
    assert load_config(p) == Config(path=p)


def test_every_key_set(tmp_path):
    p = write(tmp_path, """
[routed]
gateway4 = "10.255.255.1"
gateway6 = "fd00::1"
neighbour_devs = ["enp0s5", "bond0.100"]
announce = false
conflict_probe = false
probe_timeout_ms = 10000
[bridged]
bridge = "vmbr1"
[state]
dir = "/var/lib/vz"
""")
    cfg = load_config(p)
    assert cfg.gateways == (ipaddress.ip_address("10.255.255.1"), ipaddress.ip_address("fd00::1"))
    assert cfg.routed.neighbour_devs == ("enp0s5", "bond0.100")
    assert (cfg.routed.announce, cfg.routed.conflict_probe) == (False, False)
    assert cfg.routed.probe_timeout_ms == 10000
    assert cfg.bridged.bridge == "vmbr1" and cfg.state.dir == Path("/var/lib/vz")


def test_agent_connect_takes_local_uris_of_any_transport(tmp_path):
    uris = ["qemu+unix:///system", "lxc:///system?socket=/run/lab/libvirt-sock"]
    cfg = load_config(write(tmp_path, f"[agent]\nconnect = {uris!r}\n"))
    assert cfg.agent.connect == tuple(uris)


def test_neighbour_devs_all(tmp_path):
    assert load_config(write(tmp_path, '[routed]\nneighbour_devs = "all"')).routed \
        .neighbour_devs == "all"


def test_neighbour_devs_none(tmp_path):
    """A routed-fabric host: no proxy entries at all (docs/bgp.md)."""
    assert load_config(write(tmp_path, '[routed]\nneighbour_devs = "none"')).routed \
        .neighbour_devs == "none"


def test_env_var_selects_the_file(tmp_path, monkeypatch):
    p = write(tmp_path, '[bridged]\nbridge = "br9"\n')
    monkeypatch.setenv(ENV_VAR, str(p))
    assert config_path() == p
    assert load_config().bridged.bridge == "br9"
    monkeypatch.setenv(ENV_VAR, "")
    assert config_path() == DEFAULT_PATH
    monkeypatch.delenv(ENV_VAR)
    assert config_path() == DEFAULT_PATH == Path("/etc/vzlibvirt/vzlibvirt.toml")


@pytest.mark.parametrize("text,key", [
    ("typo = 1", "'typo'"),
    ("[routd]\ngateway4 = '169.254.0.1'", "'routd'"),
    ("[routed]\ngateway = '169.254.0.1'", "'routed.gateway'"),
    ("[routed]\nneighbor_devs = 'all'", "'routed.neighbor_devs'"),
    ("[bridged]\nbrige = 'br0'", "'bridged.brige'"),
    ("[state]\ndirectory = '/run/x'", "'state.directory'"),
    ("[state.sub]\nx = 1", "'state.sub'"),
])
def test_unknown_keys_are_named(tmp_path, text, key):
    line = refusal(tmp_path, text)
    assert f"unknown section or key {key}" in line or f"unknown key {key}" in line


@pytest.mark.parametrize("text,reason", [
    ("[routed]\ngateway4 = 1", "'routed.gateway4' must be str, not int"),
    ("[routed]\ngateway4 = 'fe80::1'", "'routed.gateway4' must be a unicast IPv4 address"),
    ("[routed]\ngateway6 = '169.254.0.1'", "'routed.gateway6' must be a unicast IPv6 address"),
    ("[routed]\ngateway4 = '224.0.0.1'", "'routed.gateway4' must be a unicast IPv4 address"),
    ("[routed]\ngateway6 = '::'", "'routed.gateway6' must be a unicast IPv6 address"),
    ("[routed]\ngateway4 = 'gw'", "'routed.gateway4' is not an IP address: 'gw'"),
    ("[routed]\ngateway4 = '169.254.0.1/32'", "'routed.gateway4' is not an IP address"),
    ("[routed]\nannounce = 'yes'", "'routed.announce' must be bool, not str"),
    ("[routed]\nannounce = 1", "'routed.announce' must be bool, not int"),
    ("[routed]\nconflict_probe = []", "'routed.conflict_probe' must be bool, not list"),
    ("[routed]\nprobe_timeout_ms = true", "'routed.probe_timeout_ms' must be int, not bool"),
    ("[routed]\nprobe_timeout_ms = 1.5", "'routed.probe_timeout_ms' must be int, not float"),
    ("[routed]\nprobe_timeout_ms = '200'", "'routed.probe_timeout_ms' must be int, not str"),
    ("[routed]\nprobe_timeout_ms = 0", "'routed.probe_timeout_ms' must be between 1 and 10000"),
    ("[routed]\nprobe_timeout_ms = 10001", "must be between 1 and 10000"),
    ("[routed]\nprobe_timeout_ms = -5", "must be between 1 and 10000"),
    ("[routed]\nneighbour_devs = 'some'",
     "'routed.neighbour_devs' must be \"detect\", \"all\", \"none\" or a non-empty list"),
    ("[routed]\nneighbour_devs = 'None'", "'routed.neighbour_devs' must be"),
    ("[routed]\nneighbour_devs = []", "'routed.neighbour_devs' must be"),
    ("[routed]\nneighbour_devs = [1]", "'routed.neighbour_devs' must be"),
    ("[routed]\nneighbour_devs = {a = 1}", "'routed.neighbour_devs' must be"),
    ("[routed]\nneighbour_devs = ['enp0s5', 'an-uplink-name-too-long']",
     "neighbour device 'an-uplink-name-too-long' is not a valid interface name"),
    ("[routed]\nneighbour_devs = ['eth/0']", "neighbour device 'eth/0'"),
    ("[bridged]\nbridge = 7", "'bridged.bridge' must be str, not int"),
    ("[bridged]\nbridge = ''", "bridge '' is not a valid interface name"),
    ("[bridged]\nbridge = 'br 0'", "bridge 'br 0' is not a valid interface name"),
    ("[bridged]\nbridge = 'bridge0123456789'", "is not a valid interface name (1-15"),
    ("[state]\ndir = 'run/vz'", "'state.dir' must be an absolute path"),
    ("[state]\ndir = 5", "'state.dir' must be str, not int"),
    ("routed = 1", "'routed' must be a table"),
    ("bridged = 'br0'", "'bridged' must be a table"),
    ("state = []", "'state' must be a table"),
    ("[routed]\ngateway4 = 1979-05-27", "'routed.gateway4' must be str, not date"),
    ("[agent]\nconnect = 'qemu:///system'", "'agent.connect' must be a list of libvirt URIs"),
    ("[agent]\nconnect = ['xen:///system']", "unsupported connection URI 'xen:///system'"),
    ("[agent]\nconnect = ['lxc:///system', 'lxc:///system']", "names a URI twice"),
    ("[agent]\nconnect = ['qemu+ssh://root@h2/system']",
     "'agent.connect' URI 'qemu+ssh://root@h2/system' names a host: the agent follows this "
     "host's libvirtd (qemu:///system)"),
    ("[agent]\nconnect = ['lxc://h2/system']", "names a host"),
])
def test_wrong_types_and_values(tmp_path, text, reason):
    assert reason in refusal(tmp_path, text)


@pytest.mark.parametrize("text", ["[routed", "a = ", "x = 'unterminated", "[a]\n[a]",
                                  "k = 1\nk = 2", b"\xff\xfe[routed]", "a = \"\\q\""])
def test_invalid_toml(tmp_path, text):
    assert "not valid TOML" in refusal(tmp_path, text)


def test_unreadable_config_is_a_refusal(tmp_path):
    d = tmp_path / "dir.toml"
    d.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(d)
    assert f"cannot read config {d}" in info.value.line()


def test_parse_config_without_path_and_errors_are_vzerrors():
    assert parse_config({}) == Config()
    with pytest.raises(VzError) as info:
        parse_config({"routed": {"nope": 1}})
    assert info.value.line() == "vzlibvirt: config: unknown key 'routed.nope'"


@pytest.mark.parametrize("dir_text", ['"/run/vz\\u0000x"', '"/run/vz\\nx"'])
def test_state_dir_with_control_characters_is_refused(tmp_path, dir_text):
    assert "'state.dir'" in refusal(tmp_path, f"[state]\ndir = {dir_text}")


@pytest.mark.parametrize("extra,reason", [
    ("[routed]\nanounce = true\n", "unknown key 'routed.anounce'"),
    ("[dhcpp]\n", "unknown section or key 'dhcpp'"),
    ("[routed]\nprobe_timeout_ms = '200'\n", "'routed.probe_timeout_ms' must be int, not str"),
    ("[routed]\nannounce = \"yes\"\n", "'routed.announce' must be bool, not str"),
    ("[routed]\nneighbour_devs = \"eth0\"\n", "'routed.neighbour_devs' must be"),
    ("[bridged]\nbridge = \"$(reboot) now\"\n", "bridge '$(reboot) now' is not a valid"),
    ("[routed\n", "not valid TOML"),
])
def test_bad_config_refuses_hook_and_plan_with_one_line(cli, extra, reason):
    cli.write_config(extra)
    from vzlibvirt.lab.domxml import domain_xml, routed

    xml = domain_xml("ct", interfaces=[routed("52:54:00:aa:00:01", ["198.51.100.7"])])
    hook, plan = cli.run_many([(("hook", "lxc", "ct", "prepare", "begin", "-"), xml),
                               (("plan", "-"), xml)], workers=2)
    line = hook.assert_refused(reason, domain="ct")
    assert str(cli.config) in line
    assert plan.assert_refused(reason) == line.replace("vzlibvirt: domain 'ct': ",
                                                       "vzlibvirt: ")
    assert cli.applied() == []


def test_empty_neighbour_list_is_refused():
    """An empty list would silently publish no guest on the LAN."""
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_config({"routed": {"neighbour_devs": []}})
