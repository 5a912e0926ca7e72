"""Hostile-input fuzzing of domain XML and host config (hypothesis, derandomized).

Issue 5: "at least 10,000 generated hostile inputs: zero tracebacks, zero partial
applies, every refusal one line". Figures for docs/reliability.md (each test asserts
its own count, so they cannot silently shrink):

  in-process (parse_domain / load_config / parse_config), 10,500 inputs:
    3,000  structured domain XML: valid shape, random and mutated attributes, random
           IP strings, MACs, names (unicode, control characters), modes, types
    5,000  byte-level mutations of valid domain XML (flips, deletions, insertions,
           duplications, dictionary tokens: DOCTYPE, entities, CDATA, NUL, bad UTF-8)
    1,500  byte-level mutations of the contract's TOML config
    1,000  structured config tables (known and unknown keys, every TOML value type)
  through the real CLI, `python -m vzlibvirt hook DRIVER NAME prepare begin -`:
      200  generated inputs (half structured, half mutated) with fuzzed argv names

Properties: parsing returns a model that satisfies the contract's invariants (routed ⇒
type='ethernet' and ≥1 IP; every IP a unicast host address that is not a gateway; no IP
twice; MACs normalized; device names valid), and `plan` can describe it; or it raises
VzError whose .line() is one printable line of at most 1000 characters. Any other
exception fails. The CLI batch also checks exit codes (0 or 1), empty stdout, one line on
stderr exactly as the in-process hook prints it, and an empty state dir afterwards.
"""

from __future__ import annotations

import functools
import io
import ipaddress
import re
import tomllib
import uuid as uuidlib
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_config import CONTRACT_TOML
from tests.unit.test_domain_xml import example
from vzlibvirt import hook
from vzlibvirt.config import Config, ConfigError, load_config, parse_config
from vzlibvirt.contract import XMLNS as VZNS
from vzlibvirt.domain_xml import DEFAULT_GATEWAYS, parse_domain
from vzlibvirt.errors import VzError
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.model import Domain, Driver, Filter, IPSource, Mode
from vzlibvirt.plan import describe_plan
from vzlibvirt.routed import routed_entries

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# --- oracles ----------------------------------------------------------------------------

def is_guest_address(a, gateways=DEFAULT_GATEWAYS) -> bool:
    """An independent statement of the contract's rule for guest IPs."""
    if a in gateways:
        return False
    if a.is_unspecified or a.is_loopback or a.is_multicast or a.is_link_local:
        return False
    if a.version == 4:
        return not (a == ipaddress.IPv4Address("255.255.255.255")
                    or a in ipaddress.IPv4Network("0.0.0.0/8")
                    or a in ipaddress.IPv4Network("240.0.0.0/4"))
    return a.ipv4_mapped is None and a.scope_id is None


def valid_ifname(name: str | None) -> bool:
    return name is None or (0 < len(name.encode()) <= 15 and name.isprintable()
                            and not any(c in name for c in "/:% \t\n")
                            and name not in (".", ".."))


def check_domain(d: Domain) -> None:
    assert isinstance(d, Domain) and d.driver in (Driver.LXC, Driver.QEMU)
    assert d.name and d.name == d.name.strip()
    assert d.uuid is None or str(uuidlib.UUID(d.uuid)) == d.uuid
    seen = set()
    vz_macs = Counter()
    for i, iface in enumerate(d.interfaces):
        assert iface.index == i
        assert iface.mac is None or MAC_RE.match(iface.mac), iface.mac
        assert valid_ifname(iface.host_dev) and valid_ifname(iface.guest_dev)
        if iface.mode is Mode.ROUTED:
            assert iface.type == "ethernet", iface
            assert len(iface.ips) >= 1, iface
            assert iface.bridge is None and not iface.plugged_by_libvirt
            assert iface.filter is Filter.NONE and not iface.isolated
        elif iface.mode is Mode.BRIDGED:
            assert iface.type in ("ethernet", "bridge", "network"), iface
            assert iface.plugged_by_libvirt == (iface.type != "ethernet")
            assert valid_ifname(iface.bridge)
            if iface.filter is Filter.MAC_IP:
                assert iface.ips
        else:
            assert iface.ips == () and iface.mode is None
        if iface.managed and iface.mac is not None:
            vz_macs[iface.mac] += 1
        for gip in iface.ips:
            assert is_guest_address(gip.address), gip
            assert gip.address not in seen, f"{gip} twice"
            seen.add(gip.address)
            if gip.source is IPSource.NATIVE:
                assert d.driver is Driver.LXC
    assert all(n == 1 for n in vz_macs.values()), vz_macs
    # whatever parses can be planned, in printable lines
    lines = describe_plan(d, Config())
    assert lines and all(line.isprintable() for line in lines)
    for iface in d.routed_interfaces:
        entries = routed_entries(iface.host_dev or "veth0", 5, iface.ips, [("eth0", 2)],
                                 Config())
        assert sum(e.kind == "route" for e in entries) == len(iface.ips)


def check_refusal(exc: VzError) -> str:
    line = exc.line()
    assert line.startswith("vzlibvirt: ") and line.isprintable(), repr(line)
    assert "\n" not in line and len(line) <= 1000
    return line


def outcome(data: bytes, driver: Driver | None = None) -> str:
    """Parse `data`; 'ok' or 'refused', any other exception fails the test."""
    try:
        d = parse_domain(data, driver=driver, require_uuid=driver is not None)
    except VzError as exc:
        check_refusal(exc)
        return "refused"
    check_domain(d)
    return "ok"


# --- strategies: domain XML ---------------------------------------------------------------

XML_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
ANY_CHARS = st.characters(blacklist_categories=("Cs",))
# mostly characters XML can carry (so the value reaches the rules), some that it cannot
XML_VALID = st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n\r ")
texts = st.one_of(st.text(XML_VALID, max_size=12), st.text(XML_VALID, max_size=12),
                  st.text(XML_VALID, max_size=12), st.text(ANY_CHARS, max_size=8))
GOOD_IPS = ["198.51.100.7", "198.51.100.8", "2001:db8::7", "2001:db8::8", "203.0.113.1",
            "10.1.2.3", "192.168.0.10", "2001:db8:100::101", "fd00::5", "100.64.0.1"]
SPECIAL_IPS = ["169.254.0.1", "fe80::1", "FE80::0001", "127.0.0.1", "::1", "0.0.0.0", "::",
               "255.255.255.255", "224.0.0.1", "ff02::1", "::ffff:198.51.100.7",
               "198.51.100.7/32", "2001:db8::7%eth0", " 198.51.100.7 ", "", "1.2.3",
               "01.2.3.4", "240.0.0.1", "0.1.2.3", "169.254.1.1", "fe80::2", "::1.2.3.4",
               "64:ff9b::1.2.3.4", "2002::1", "10.0.0.1", "2001:DB8:0::7", "1.2.3.4.5",
               "::ffff:0:0", "100.64.0.1", "fc00::1", "192.0.0.8"]
ips = st.one_of(
    st.sampled_from(GOOD_IPS),
    st.sampled_from(SPECIAL_IPS),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
    texts,
)
MACS = ["52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:AA:00:03", "fe:54:00:aa:00:04"]
macs = st.one_of(
    st.sampled_from(MACS),
    st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b)),
    st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b)),
    st.sampled_from(["52-54-00-aa-00-01", "52:54:00:aa:00", "52:54:00:aa:00:01:02",
                     " 52:54:00:aa:00:01 ", "zz:54:00:aa:00:01", ""]),
    texts,
)
ifnames = st.one_of(
    st.sampled_from(["veth0", "vnet12", "venet0", "br0", "$(reboot)", "`id`;x", "a/b", "..",
                     "eth 0", "x" * 15, "x" * 16, "é" * 8, "eth0:1", "%d", "lo"]),
    texts,
)


def esc(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;"))


def attrs(pairs: dict) -> str:
    return "".join(f' {k}="{esc(v)}"' for k, v in pairs.items() if v is not None)


@functools.cache
def one_of_these(values: tuple) -> st.SearchStrategy:
    return st.sampled_from(values)  # built once: making strategies per draw is slow


@functools.cache
def upto(n: int) -> st.SearchStrategy:
    return st.integers(0, n)


def pick(draw, good: tuple, bad: st.SearchStrategy | None, odds: int):
    """Mostly one of `good`; one time in `odds` a hostile value from `bad` (if any)."""
    if bad is not None and draw(upto(odds - 1)) == 0:
        return draw(bad)
    return draw(one_of_these(good))


MODES = ("routed", "routed", "bridged", None)
DRIVER_OF = {"lxc": Driver.LXC, "kvm": Driver.QEMU, "qemu": Driver.QEMU}
TYPE_BAD = st.sampled_from(["xen", "", "LXC"]) | texts
MODE_BAD = st.sampled_from(["ROUTED", "nat", ""]) | texts
FILTER_BAD = st.sampled_from(["strict", "MAC"]) | texts
SOURCE_BAD = st.fixed_dictionaries({"bridge": st.none() | ifnames, "network": st.none() | texts})
IP_BAD = st.ip_addresses().map(str) | texts
UUID_BAD = st.uuids().map(str) | texts | st.just(None)
ANY_MAC = st.none() | macs
ANY_IFNAME = st.none() | ifnames
EXTRA_KIDS = ('<vz:ip address="1.2.3.4" prefix="32"/>', "<vz:route/>", "<other/>", "text")


@st.composite
def domain_docs(draw, with_driver: bool = False) -> tuple[bytes, Driver | None]:
    """A domain document and the driver to parse it with (None: from the XML; always
    one with `with_driver`, as the hook has).

    Clean in structure half the time (so the rules are reached), hostile anywhere the
    other half; IPs, modes and MAC pairings always vary."""
    hostile = draw(st.booleans())
    odds = 6 if hostile else 0

    def choose(good: tuple, bad: st.SearchStrategy = texts):
        return pick(draw, good, bad if hostile else None, odds)

    dtype = choose(("lxc", "lxc", "kvm", "qemu"), TYPE_BAD)
    driver = DRIVER_OF.get(dtype, Driver.LXC)
    if not with_driver and draw(st.booleans()):
        driver = None
    if hostile and draw(upto(5)) == 0:
        driver = draw(one_of_these((Driver.LXC, Driver.QEMU)))
    name = choose(("ct", "vm", "a;rm -rf /", "$(reboot)", "`id`", " x ", "контейнер"))
    uuid = choose(("00000000-0000-0000-0000-000000000001",
                   "f0000000-0000-4000-8000-00000000000f"), UUID_BAD)
    ip_pool = tuple(GOOD_IPS * 8 + SPECIAL_IPS)

    def ip():
        return pick(draw, ip_pool, IP_BAD, 6)

    vz_ifaces, dev_ifaces = [], []
    for n in range(draw(upto(4))):
        mac = choose((MACS[n], MACS[n], MACS[n].upper()), ANY_MAC)
        body = ""
        if mac is not None:
            body += f"<mac{attrs({'address': mac})}/>"
        src = choose((None, None, (("bridge", "br0"),), (("network", "default"),)), SOURCE_BAD)
        if src is not None:
            src = dict(src)
            body += f"<source{attrs(src)}/>"
        for tag, good in (("target", (None, "veth0", "vnet12", "$(x)")),
                          ("guest", (None, "venet0"))):
            dev = choose(good, ANY_IFNAME)
            if dev is not None:
                body += f"<{tag}{attrs({'dev': dev})}/>"
        for _ in range(draw(upto(2)) if hostile or dtype == "lxc" else 0):
            prefix = choose(("32", "128", "32", "128", "24", None))
            body += f"<ip{attrs({'address': ip(), 'prefix': prefix})}/>"
        itype = choose(("ethernet",) * 5 + ("bridge", "network", "user"))
        dev_ifaces.append(f"<interface{attrs({'type': itype})}>{body}</interface>")
        if draw(upto(3)):
            vz_mac = choose((mac or MACS[n],) * 5 + (MACS[(n + 1) % 4],), ANY_MAC)
            a = {"mac": vz_mac, "mode": choose(MODES, MODE_BAD),
                 "bridge": choose((None, None, "br0"), ANY_IFNAME),
                 "filter": choose((None, None, "none", "mac", "mac-ip"), FILTER_BAD),
                 "isolated": choose((None, None, "yes", "no"))}
            if hostile and draw(upto(9)) == 0:
                a[draw(one_of_these(("gateway", "ip", "vz:x")))] = "1"
            kids = "".join(f"<vz:ip{attrs({'address': ip()})}/>" for _ in range(draw(upto(3))))
            if hostile and draw(upto(9)) == 0:
                kids += draw(one_of_these(EXTRA_KIDS))
            vz_ifaces.append(f"<vz:interface{attrs(a)}>{kids}</vz:interface>")
    meta = ""
    if vz_ifaces or draw(st.booleans()):
        nets = 2 if hostile and draw(upto(9)) == 0 else 1
        net = f'<vz:network xmlns:vz="{VZNS}">{"".join(vz_ifaces)}</vz:network>'
        meta = f"<metadata>{net * nets}<x:other xmlns:x='urn:x'/></metadata>"
    head = f"<domain{attrs({'type': dtype})}>"
    parts = [f"<name>{esc(name)}</name>"]
    if uuid is not None:
        parts.append(f"<uuid>{esc(uuid)}</uuid>")
    parts += [meta, f"<devices>{''.join(dev_ifaces)}</devices>"]
    return (head + "".join(parts) + "</domain>").encode("utf-8", "surrogatepass"), driver


# --- strategies: mutations -----------------------------------------------------------------

XML_SEEDS = [
    example("lxc"), example("kvm"),
    domain_xml("ct1", interfaces=[routed("52:54:00:aa:00:01", ["198.51.100.7", "2001:db8::7"],
                                         target="veth1", native=True)]),
    domain_xml("vm1", driver="kvm", interfaces=[
        routed("52:54:00:aa:00:01", ["198.51.100.7", "2001:db8::7"], target="vnet1"),
        {"mac": "52:54:00:aa:00:02", "type": "bridge", "source_bridge": "br0",
         "vz": {"mode": "bridged", "filter": "mac-ip", "ips": ["198.51.100.9"]}}]),
]
XML_TOKENS = [b"<", b">", b"/>", b"&", b"&amp;", b"&#0;", b"&#x10FFFF;", b"&lol;",
              b"<!DOCTYPE d>", b'<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
              b'<!ENTITY a "b">', b"]]>", b"<![CDATA[x]]>", b"\x00", b"\xff", b"\xc3",
              b"\xef\xbb\xbf", b'"', b"'", b"\r\n", b"</interface>",
              b"<interface type='ethernet'>", b'<vz:ip address="198.51.100.7"/>',
              b'<vz:ip address="::1"/>', b'<vz:ip address="169.254.0.1"/>', b' mode="routed"',
              b' mode="bridged"', b"<ip address='198.51.100.9' prefix='32'/>",
              b"52:54:00:aa:00:01", b"52:54:00:AA:00:02", b"<name>", b"</name>",
              b'xmlns:vz="http://vzlibvirt.org/xmlns/network/1.0"', b"<?pi x?>", b"<!--",
              b"-->", b"<uuid>00000000-0000-0000-0000-000000000000</uuid>", b"%", b";"]
SWAPS = [(b"198.51.100.101", b"198.51.100.7"), (b"198.51.100.7", b"127.0.0.1"),
         (b"2001:db8::7", b"2001:db8:100::101"), (b"routed", b"bridged"),
         (b"bridged", b"routed"), (b"ethernet", b"bridge"), (b"lxc", b"kvm"),
         (b"kvm", b"lxc"), (b"aa:00:02", b"aa:00:01"), (b"prefix='32'", b"prefix='24'"),
         (b"vz:interface", b"vz:iface"), (b"<uuid>", b"<uuid>x")]


@st.composite
def mutated(draw, seeds: list[bytes], tokens: list[bytes], swaps) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.sampled_from([1, 1, 1, 1, 2, 2, 3, 8]))):
        op = draw(st.integers(0, 6))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and data:  # flip bits of one byte
            p = min(pos, len(data) - 1)
            data[p] ^= draw(st.integers(1, 255))
        elif op == 1:  # delete a range
            data[pos:pos + draw(st.integers(1, 40))] = b""
        elif op == 2:  # insert random bytes
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == 3:  # insert a dictionary token
            data[pos:pos] = draw(st.sampled_from(tokens))
        elif op == 4:  # duplicate a range elsewhere
            start = draw(st.integers(0, len(data)))
            chunk = bytes(data[start:start + draw(st.integers(1, 200))])
            data[pos:pos] = chunk
        elif op == 5 and swaps:  # swap a meaningful value for another
            old, new = draw(st.sampled_from(swaps))
            data = bytearray(bytes(data).replace(old, new, 1))
        else:  # truncate
            del data[pos:]
    return bytes(data)


xml_mutations = mutated(XML_SEEDS, XML_TOKENS, SWAPS)

# --- in-process: domain XML ----------------------------------------------------------------


def test_structured_domain_xml():
    tally = Counter()

    @fuzz_settings(3000)
    @given(domain_docs())
    def run(doc):
        tally[outcome(*doc)] += 1

    run()
    print(f"fuzz tally: {dict(tally)}")  # shown with -s: the figures for the docs
    assert sum(tally.values()) >= 3000, tally
    # the generator reaches both sides: a good share parses, a good share is refused
    assert tally["ok"] >= 250 and tally["refused"] >= 1000, tally


def test_mutated_domain_xml():
    tally = Counter()

    @fuzz_settings(5000)
    @given(xml_mutations, st.sampled_from([None, Driver.LXC, Driver.QEMU]))
    def run(data, driver):
        tally[outcome(data, driver)] += 1

    run()
    print(f"fuzz tally: {dict(tally)}")  # shown with -s: the figures for the docs
    assert sum(tally.values()) >= 5000, tally
    assert tally["ok"] >= 150 and tally["refused"] >= 2000, tally


# --- in-process: config --------------------------------------------------------------------

def check_config(cfg: Config) -> None:
    r = cfg.routed
    assert isinstance(r.gateway4, ipaddress.IPv4Address)
    assert isinstance(r.gateway6, ipaddress.IPv6Address)
    assert r.neighbour_devs in ("detect", "all") or (
        isinstance(r.neighbour_devs, tuple) and all(valid_ifname(n) for n in r.neighbour_devs))
    assert type(r.announce) is bool and type(r.conflict_probe) is bool
    assert type(r.probe_timeout_ms) is int and 1 <= r.probe_timeout_ms <= 10_000
    assert valid_ifname(cfg.bridged.bridge)
    assert cfg.state.dir.is_absolute() and str(cfg.state.dir).isprintable()


TOML_SEEDS = [CONTRACT_TOML.encode(), b'[routed]\nneighbour_devs = ["enp0s5", "eth1"]\n'
              b'probe_timeout_ms = 5\n[state]\ndir = "/var/lib/vz"\n']
TOML_TOKENS = [b"[", b"]", b"=", b'"', b"'", b"\n", b"true", b"false", b"1e9", b"-1", b"0x10",
               b"[routed]", b"[state]", b"[bridged]", b"dir = ", b'"relative"', b"[[a]]",
               b"{}", b"\\u0000", b"1979-05-27T07:32:00Z", b"inf", b"nan", b"#", b"\x00",
               b"\xff", b"'''", b'"""', b"[" * 50, b"a.b.c = 1", b"routed.x = 1",
               b'neighbour_devs = "all"', b"probe_timeout_ms = 0", b'bridge = "a b"']
TOML_SWAPS = [(b"169.254.0.1", b"fe80::1"), (b"true", b"1"), (b"200", b"200.0"),
              (b"/run/vzlibvirt", b"run"), (b'"detect"', b'["x" ]'), (b"br0", b"br/0")]


def fuzz_configs(strategy, examples: int, parse, refused) -> Counter:
    """Run PARSE on EXAMPLES inputs from STRATEGY: a refusal goes to REFUSED, a config
    must pass check_config. The tally of both."""
    tally = Counter()

    @fuzz_settings(examples)
    @given(strategy)
    def run(data):
        try:
            cfg = parse(data)
        except ConfigError as exc:
            refused(exc)
            tally["refused"] += 1
            return
        check_config(cfg)
        tally["ok"] += 1

    run()
    print(f"fuzz tally: {dict(tally)}")  # shown with -s: the figures for the docs
    return tally


def test_mutated_toml_config(tmp_path):
    path = tmp_path / "vzlibvirt.toml"

    def parse(data: bytes):
        path.write_bytes(data)
        return load_config(path)

    def refused(exc: ConfigError) -> None:
        assert str(path) in check_refusal(exc)

    tally = fuzz_configs(mutated(TOML_SEEDS, TOML_TOKENS, TOML_SWAPS), 1500, parse, refused)
    assert sum(tally.values()) >= 1500, tally
    assert tally["ok"] >= 80 and tally["refused"] >= 500, tally


toml_scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(),
                         st.text(XML_CHARS, max_size=20), st.datetimes(), st.dates(),
                         st.times(), st.sampled_from(["detect", "all", "169.254.0.1",
                                                      "fe80::1", "10.0.0.1", "/run/x",
                                                      "br0", "enp0s5"]))
toml_values = st.recursive(toml_scalars, lambda v: st.lists(v, max_size=4)
                           | st.dictionaries(st.text(max_size=8), v, max_size=3), max_leaves=8)
KEYS = {"routed": ["gateway4", "gateway6", "neighbour_devs", "announce", "conflict_probe",
                   "probe_timeout_ms"], "bridged": ["bridge"], "state": ["dir"]}
sections = st.fixed_dictionaries({}, optional={
    name: st.one_of(
        st.dictionaries(st.sampled_from(keys) | st.text(max_size=10), toml_values, max_size=5),
        toml_values)
    for name, keys in KEYS.items()})
config_tables = st.one_of(sections, st.dictionaries(st.text(max_size=10), toml_values,
                                                    max_size=3))


def test_structured_config_tables():
    tally = fuzz_configs(config_tables, 1000, parse_config, check_refusal)
    assert sum(tally.values()) >= 1000, tally
    assert tally["ok"] >= 30 and tally["refused"] >= 300, tally


# --- through the real command line ---------------------------------------------------------

argv_names = st.one_of(st.sampled_from(["ct", "a;rm -rf /", "$(reboot)", "`id`", "x\ny"]),
                       st.text(XML_CHARS, min_size=1, max_size=30))


def test_hook_prepare_cli_batch(cli, monkeypatch):
    """200 generated inputs through `python -m vzlibvirt hook D NAME prepare begin -`."""
    batch: list[tuple[str, str, bytes]] = []

    @fuzz_settings(200)
    @given(argv_names, st.one_of(
        domain_docs(with_driver=True).map(lambda doc: (doc[0], doc[1].value)),
        st.tuples(xml_mutations, st.sampled_from(["lxc", "qemu"]))))
    def collect(name, doc):
        batch.append((doc[1], name, doc[0]))

    collect()
    assert len(batch) >= 200
    batch = batch[-200:]  # the generation phase's examples, in a fixed order
    results = cli.run_many([(("hook", d, n, "prepare", "begin", "-"), x) for d, n, x in batch])

    monkeypatch.setenv("VZLIBVIRT_CONFIG", str(cli.config))
    tally = Counter()
    for (driver, name, data), r in zip(batch, results, strict=True):
        assert r.rc in (0, 1) and r.stdout == b"" and "Traceback" not in r.stderr, r.describe()
        if r.rc == 1:
            r.assert_refused()
        else:
            assert r.stderr == "", r.describe()
            parse_domain(data, driver=Driver(driver), require_uuid=True)  # really valid
        out, err = io.BytesIO(), io.StringIO()
        rc = hook.main([driver, name, "prepare", "begin", "-"], stdin=io.BytesIO(data),
                       stdout=out, stderr=err)
        assert (rc, out.getvalue(), err.getvalue()) == (r.rc, b"", r.stderr), r.describe()
        tally[r.rc] += 1
    print(f"cli batch exit codes: {dict(tally)}")
    assert tally[1] >= 50 and tally[0] >= 5, tally
    assert cli.applied() == [], "prepare applied something"


def test_fuzz_seeds_are_valid():
    """The mutation seeds parse (so mutations start from the accepted side)."""
    for seed in XML_SEEDS:
        check_domain(parse_domain(seed))
    for seed in TOML_SEEDS:
        check_config(parse_config(tomllib.loads(seed.decode())))
    assert Path(__file__).with_name("test_config.py").exists()
