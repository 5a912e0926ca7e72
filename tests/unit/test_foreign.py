"""Installing vzlibvirt never stops an existing guest from starting (issue 13, item 3).

The corpus in tests/unit/foreign/ holds domains written for other setups, hand-made in
the shapes of libvirt's own test-suite domains: hostdev, vhost-user, direct/macvtap,
NAT network, user, vdpa interfaces, name templates (`vm%d`), many disks, another tool's
<metadata> whose comment and CDATA hold the text `<!DOCTYPE`, LXC interfaces with
libvirt's own host-side addressing, other prefixes or another peer, MACs and UUIDs in
spellings libvirt accepts. Each passes every hook operation untouched (exit 0, no output,
nothing recorded) and `plan` says why each interface is left alone.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from vzlibvirt.contract import MAX_XML_BYTES, XMLNS
from vzlibvirt.lab.domxml import domain_xml, routed

CORPUS = Path(__file__).parent / "foreign"
FILES = sorted(CORPUS.glob("*.xml"))
OPS = ("prepare", "start", "started", "reconnect", "stopped", "release")


def _driver(data: bytes) -> str:
    return "lxc" if b"<domain type='lxc'" in data else "qemu"


def _name(data: bytes) -> str:
    return data.split(b"<name>", 1)[1].split(b"</name>", 1)[0].decode()


def test_corpus_is_there():
    assert len(FILES) >= 20
    for f in FILES:
        assert XMLNS.encode() not in f.read_bytes(), f"{f.name} must be foreign"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_foreign_domain_passes_untouched(cli, path):
    data = path.read_bytes()
    name, driver = _name(data), _driver(data)
    calls = [(("hook", driver, name, op, "end" if op in ("stopped", "release") else "begin",
               "-"), data) for op in OPS]
    calls.append((("plan", str(path)), b""))
    *hooks, plan = cli.run_many(calls)
    for r in hooks:
        assert (r.rc, r.stdout, r.stderr) == (0, b"", ""), r.describe()
    assert plan.rc == 0, plan.describe()
    out = plan.stdout.decode()
    assert "no interface managed by vzlibvirt: nothing to do" in out
    assert out.count("left alone") == data.count(b"<interface "), out
    assert cli.applied() == []


@pytest.mark.parametrize("file,why", [
    ("lxc-source-ip-hostside.xml", "libvirt's own host-side addressing (<source><ip>)"),
    ("lxc-peer-other.xml", "has peer 192.168.122.1, not the routed gateway"),
    ("lxc-native-prefix-24.xml", "native <ip> 198.51.100.7/24 is not a host address (/32)"),
    ("lxc-native-no-prefix.xml", "without a prefix is not a host address (/32)"),
    ("lxc-native6-64.xml", "native <ip> 2001:db8:5::2/64 is not a host address (/128)"),
    ("qemu-network-nat.xml", "left alone: no <vz:interface>"),
])
def test_plan_says_why(cli, file, why):
    r = cli.plan(str(CORPUS / file))
    assert r.rc == 0 and why in r.stdout.decode(), r.describe()


def test_large_foreign_metadata_passes(cli):
    """Another tool's <metadata> of several MiB (today's limit was 1 MiB) passes."""
    blob = "<tool:blob xmlns:tool='http://example.org/t'>" + "A" * 4096 + "</tool:blob>"
    meta = "<metadata>" + "".join(blob.replace("<tool:blob ", f"<tool:blob n='{i}' ")
                                  for i in range(700)) + "</metadata>"
    data = (CORPUS / "qemu-network-nat.xml").read_bytes().replace(
        b"<memory", meta.encode() + b"<memory", 1)
    assert (1 << 20) < len(data) < MAX_XML_BYTES
    for op in ("prepare", "started", "stopped"):
        r = cli.hook("qemu", "qemu-network-nat", op, data,
                     subop="end" if op == "stopped" else "begin")
        assert (r.rc, r.stdout, r.stderr) == (0, b"", ""), r.describe()
    assert cli.applied() == []


def test_ours_accepts_libvirt_spellings(cli, tmp_path):
    """A MAC with one-digit octets and a UUID with spaces are what libvirt accepts (and
    normalises before any hook sees them): `plan` takes them, in canonical form."""
    u = uuid.uuid4()
    spaced = " ".join(u.hex[i:i + 4] for i in range(0, 32, 4))
    data = domain_xml("spell", driver="kvm", uuid=spaced, interfaces=[
        routed("52:54:0:a:0:1", ["198.51.100.61"])]).replace(
        b'mac="52:54:0:a:0:1"', b'mac="52:54:00:0A:00:01"')
    f = tmp_path / "spell.xml"
    f.write_bytes(data)
    r = cli.plan(str(f))
    assert r.rc == 0, r.describe()
    out = r.stdout.decode()
    assert f"uuid {u}" in out and "interface 52:54:00:0a:00:01: routed" in out, out


def test_ours_accepts_a_target_name_template(cli, tmp_path):
    """libvirt fills `%d` in when it creates the device; the real name is known by
    `started`, so a template in an interface of ours is no error."""
    data = domain_xml("tmpl", driver="kvm", interfaces=[
        routed("52:54:00:0a:00:02", ["198.51.100.62"], target="vz%d")])
    r = cli.hook("qemu", "tmpl", "prepare", data)
    assert (r.rc, r.stderr) == (0, ""), r.describe()
    f = tmp_path / "tmpl.xml"
    f.write_bytes(data)
    plan = cli.plan(str(f))
    assert "host device named by libvirt at start" in plan.stdout.decode(), plan.describe()
    bad = domain_xml("tmpl2", driver="kvm", interfaces=[
        routed("52:54:00:0a:00:03", ["198.51.100.63"], target="a/%d")])
    cli.hook("qemu", "tmpl2", "prepare", bad).assert_refused(
        "target dev 'a/%d' is not a valid interface name", domain="tmpl2")


def test_real_doctype_still_refused(cli):
    """The text scan is gone, the refusal of real DTDs stays (defence in depth)."""
    data = b"<?xml version='1.0'?>\n<!-- c -->\n<!DOCTYPE domain [<!ENTITY a 'b'>]>\n" + \
        (CORPUS / "qemu-user.xml").read_bytes()
    cli.hook("qemu", "qemu-user", "prepare", data).assert_refused(
        "XML with a DOCTYPE or entity declarations is refused", domain="qemu-user")
