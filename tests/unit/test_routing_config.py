"""`vzlibvirt routing-config`: the rendered BIRD 2 / FRR 8.4 configurations, and the
refusal of bad arguments (exit 2, one line). The daemons themselves run the output in
tests/netns/test_bgp.py; here bird's own parser checks the syntax when it is installed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import require
from vzlibvirt import contract
from vzlibvirt.lab.runner import VzCli
from vzlibvirt.routing_config import build_spec, render_bird, render_frr

BASE = ["--asn", "65001", "--router-id", "198.51.100.2"]
DUAL = [*BASE, "--peer", "198.51.100.10:65000", "--peer", "[2001:db8:100::10]:65000",
        "--export", "203.0.113.0/26", "--export", "2001:db8:200::/64"]


def spec(*, peers=("198.51.100.10:65000", "[2001:db8:100::10]:65000"),
         exports=("203.0.113.0/26", "2001:db8:200::/64")):
    return build_spec("65001", "198.51.100.2", list(peers), list(exports))


@pytest.fixture
def cli(tmp_path) -> VzCli:
    return VzCli(config=tmp_path / "none.toml")


def test_bird_learns_only_protocol_247_host_routes_and_imports_nothing():
    text = render_bird(spec())
    assert "router id 198.51.100.2;" in text
    assert "define VZLIBVIRT_V4 = [ 203.0.113.0/26{32,32} ];" in text
    assert "define VZLIBVIRT_V6 = [ 2001:db8:200::/64{128,128} ];" in text
    for v in (4, 6):
        kernel = text.split(f"protocol kernel vzlibvirt{v} {{")[1].split("\n}")[0]
        assert f"import where krt_source = {contract.ROUTE_PROTOCOL} && net ~ VZLIBVIRT_V{v};" \
            in kernel
        assert "export none;" in kernel and "learn;" in kernel
    assert "protocol device {" in text
    peer1 = text.split("protocol bgp vzlibvirt_peer1 {")[1].split("\n}")[0]
    assert "local as 65001;" in peer1 and "neighbor 198.51.100.10 as 65000;" in peer1
    assert "ipv4 {" in peer1 and "ipv6" not in peer1
    assert "import none;" in peer1 and "next hop self;" in peer1
    assert 'export where proto = "vzlibvirt4" && net ~ VZLIBVIRT_V4;' in peer1
    peer2 = text.split("protocol bgp vzlibvirt_peer2 {")[1].split("\n}")[0]
    assert "neighbor 2001:db8:100::10 as 65000;" in peer2 and "ipv6 {" in peer2
    assert text.count("protocol bgp ") == 2 and text.count("protocol kernel ") == 2


def test_bird_single_family_has_no_other_kernel_protocol():
    text = render_bird(spec(peers=["198.51.100.10:65000"], exports=["203.0.113.0/24",
                                                                    "198.51.100.128/25"]))
    assert "protocol kernel vzlibvirt6" not in text and "VZLIBVIRT_V6" not in text
    assert "[ 203.0.113.0/24{32,32}, 198.51.100.128/25{32,32} ]" in text


def test_frr_redistributes_only_metric_247_host_routes_with_policies_both_ways():
    text = render_frr(spec(exports=("203.0.113.0/26", "203.0.113.99/32",
                                    "2001:db8:200::/64")))
    lines = text.splitlines()
    assert "frr defaults traditional" in lines
    assert "ip prefix-list VZLIBVIRT-V4 seq 5 permit 203.0.113.0/26 ge 32 le 32" in lines
    assert "ip prefix-list VZLIBVIRT-V4 seq 10 permit 203.0.113.99/32" in lines  # no ge/le
    assert "ipv6 prefix-list VZLIBVIRT-V6 seq 5 permit 2001:db8:200::/64 ge 128 le 128" in lines
    kernel4 = text.split("route-map VZLIBVIRT-KERNEL-V4 permit 10\n")[1].split("exit")[0]
    assert kernel4.splitlines() == [" match ip address prefix-list VZLIBVIRT-V4",
                                    f" match metric {contract.ROUTE_METRIC}"]
    assert "route-map VZLIBVIRT-IN-NONE deny 10" in lines
    bgp = text.split("router bgp 65001\n")[1]
    assert " bgp router-id 198.51.100.2" in bgp and " bgp ebgp-requires-policy" in bgp
    assert " no bgp default ipv4-unicast" in bgp
    af4 = bgp.split(" address-family ipv4 unicast\n")[1].split(" exit-address-family")[0]
    assert af4.splitlines() == [
        "  redistribute kernel route-map VZLIBVIRT-KERNEL-V4",
        "  neighbor 198.51.100.10 activate",
        "  neighbor 198.51.100.10 next-hop-self",
        "  neighbor 198.51.100.10 route-map VZLIBVIRT-IN-NONE in",
        "  neighbor 198.51.100.10 route-map VZLIBVIRT-OUT-V4 out"]
    af6 = bgp.split(" address-family ipv6 unicast\n")[1].split(" exit-address-family")[0]
    assert "  neighbor 2001:db8:100::10 route-map VZLIBVIRT-OUT-V6 out" in af6
    assert "198.51.100.10" not in af6 and "redistribute connected" not in text


def test_the_command_prints_the_same_as_the_renderer(cli):
    for daemon, render in (("bird", render_bird), ("frr", render_frr)):
        r = cli.run("routing-config", daemon, *DUAL)
        assert (r.rc, r.stderr) == (0, ""), r.describe()
        assert r.text == render(spec())
        assert f"vzlibvirt routing-config {daemon} --asn 65001" in r.text.splitlines()[0]


def test_bird_parses_the_output(tmp_path):
    require(shutil.which("bird") is not None, "bird2 is not installed")
    conf = tmp_path / "bird.conf"
    conf.write_text(render_bird(spec()))
    p = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("args,reason", [
    ([], "the following arguments are required"),
    (["ospf", *DUAL[0:]], "invalid choice: 'ospf'"),
    (["bird", *BASE, "--export", "203.0.113.0/26"], "at least one --peer"),
    (["bird", *BASE, "--peer", "198.51.100.10:65000"], "at least one --export"),
    (["bird", "--asn", "0", *DUAL[2:]], "not a usable AS number"),
    (["bird", "--asn", "23456", *DUAL[2:]], "not a usable AS number"),
    (["bird", "--asn", "4294967296", *DUAL[2:]], "not a usable AS number"),
    (["bird", "--asn", "AS65001", *DUAL[2:]], "'AS65001' is not an AS number"),
    (["bird", "--asn", "-1", *DUAL[2:]], "is not an AS number"),
    (["bird", "--asn", "065001", *DUAL[2:]], "is not an AS number"),
    (["bird", "--asn", "６５００１", *DUAL[2:]], "is not an AS number"),
    (["bird", "--asn", "65001", "--router-id", "2001:db8::1", *DUAL[4:]],
     "is not an IPv4 address"),
    (["bird", "--asn", "65001", "--router-id", "0.0.0.0", *DUAL[4:]], "must be a unicast"),
    (["bird", *BASE, "--peer", "198.51.100.10", "--export", "203.0.113.0/26"],
     "is not IP:ASN"),
    (["bird", *BASE, "--peer", "198.51.100.10:", "--export", "203.0.113.0/26"],
     "is not IP:ASN"),
    (["bird", *BASE, "--peer", "host.example:65000", "--export", "203.0.113.0/26"],
     "is not IP:ASN"),
    (["bird", *BASE, "--peer", "198.51.100.10:655360000000", "--export", "203.0.113.0/26"],
     "not a usable AS number"),
    (["bird", *BASE, "--peer", "127.0.0.1:65000", "--export", "203.0.113.0/26"],
     "must be a global unicast address"),
    (["bird", *BASE, "--peer", "[fe80::1]:65000", "--export", "2001:db8::/64"],
     "must be a global unicast address"),
    (["bird", *BASE, "--peer", "[fe80::1%eth0]:65000", "--export", "2001:db8::/64"],
     "scoped address"),
    (["bird", *BASE, "--peer", "224.0.0.5:65000", "--export", "203.0.113.0/26"],
     "must be a global unicast address"),
    (["bird", *BASE, "--peer", "198.51.100.10:65000", "--peer", "198.51.100.10:65002",
      "--export", "203.0.113.0/26"], "--peer 198.51.100.10 is given twice"),
    (["bird", *BASE, "--peer", "198.51.100.10:65000", "--export", "203.0.113.1/26"],
     "has host bits set"),
    (["bird", *BASE, "--peer", "198.51.100.10:65000", "--export", "203.0.113.0/33"],
     "is not a prefix"),
    (["bird", *BASE, "--peer", "198.51.100.10:65000", "--export", "203.0.113.7"],
     "needs a prefix length"),
    (["bird", *BASE, "--peer", "198.51.100.10:65000", "--export", "224.0.0.0/4"],
     "holds no guest addresses"),
    (["bird", *BASE, "--peer", "198.51.100.10:65000", "--export", "203.0.113.0/26",
      "--export", "203.0.113.0/26"], "--export 203.0.113.0/26 is given twice"),
    (["bird", *BASE, "--peer", "198.51.100.10:65000", "--export", "2001:db8::/64"],
     "--export 2001:db8::/64 has no IPv6 --peer"),
    (["frr", *BASE, "--peer", "198.51.100.10:65000", "--peer", "[2001:db8::1]:65000",
      "--export", "203.0.113.0/26"], "--peer 2001:db8::1 has no IPv6 --export"),
    (["frr", *DUAL, "--bogus"], "unrecognized arguments: --bogus"),
    (["frr", *BASE, "--peer", "198.51.100.10:65000\n--export", "--export", "203.0.113.0/26"],
     "AS '65000\\n--export' is not an AS number"),
])
def test_bad_arguments_exit_2_with_one_line(cli, args, reason):
    r = cli.run("routing-config", *args)
    assert r.rc == 2 and r.stdout == b"", r.describe()
    assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1, r.describe()
    assert r.stderr.startswith("vzlibvirt routing-config: ") and reason in r.stderr, \
        r.describe()
    assert r.stderr[:-1].isprintable()


def test_ipv6_peer_without_brackets_splits_at_the_last_colon():
    s = build_spec("4200000000", "203.0.113.1", ["2001:db8:100::10:65000"],
                   ["2001:db8:200::/64"])
    assert str(s.peers[0].address) == "2001:db8:100::10" and s.peers[0].asn == 65000
    assert s.asn == 4200000000  # four-octet AS numbers
