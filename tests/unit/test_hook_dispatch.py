"""Hook dispatch on the paths that need no root: filters, no-ops, prepare, usage errors.

`migrate`/`restore` are XML filters (libvirt uses stdout as the new XML): the bytes go
back unchanged. Operations the hook does not handle exit 0 and print nothing. Usage
errors exit 2. `prepare` validates and applies nothing.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from tests.unit.test_domain_xml import example
from vzlibvirt import hook
from vzlibvirt.contract import CONFIG_ENV, MAX_XML_BYTES
from vzlibvirt.lab.domxml import domain_xml, routed

M1 = "52:54:00:aa:00:01"
GOOD = domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7"], native=True)])
# byte-exact: a declaration, CRLF, tabs, trailing spaces, non-ASCII, no final newline
ODD = ('<?xml version="1.0"?>\r\n<domain type=\'kvm\'>\t<name>vm é</name>  \r\n'
       '<!-- keep me --><devices/></domain>').encode()


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    """In-process calls read the config from the environment: a private state dir, so a
    `migrate` mark never lands in the machine's own /run/vzlibvirt."""
    config = tmp_path / "vzlibvirt.toml"
    config.write_text(f'[state]\ndir = "{tmp_path / "state"}"\n')
    monkeypatch.setenv(CONFIG_ENV, str(config))


def run(argv: list[str], data: bytes = b"") -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    rc = hook.main(argv, stdin=io.BytesIO(data), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("op", ["migrate", "restore"])
@pytest.mark.parametrize("data", [GOOD, ODD, example("kvm"), b"", b"not xml at all \x00\xff",
                                  b"<domain>" + b"x" * 500_000 + b"</domain>"],
                         ids=["good", "odd", "contract", "empty", "binary", "large"])
def test_filters_print_the_xml_back_unchanged_in_process(op, data):
    for driver in ("qemu", "lxc"):
        assert run([driver, "guest", op, "begin", "-"], data) == (0, data, "")


@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_filters_print_the_xml_back_unchanged_cli(cli, op):
    for data in (ODD, example("kvm")):
        r = cli.hook("qemu", "vm", op, data)
        assert (r.rc, r.stdout, r.stderr) == (0, data, ""), r.describe()
    if op == "restore":
        assert cli.applied() == []
    else:  # a live migration's destination: the managed domain is marked, nothing applied
        uuid = re.search(rb"<uuid>([^<]+)</uuid>", example("kvm")).group(1).decode()
        assert [p.relative_to(cli.state) for p in cli.applied()] == [
            Path("incoming"), Path("incoming") / f"qemu-{uuid}"]


@pytest.mark.parametrize("op,subop", [("attach", "begin"), ("detach", "begin"),
                                      ("shutdown", "end"), ("frobnicate", "-"), ("", "")])
def test_unknown_operations_do_nothing(op, subop):
    for driver in ("qemu", "lxc"):
        assert run([driver, "guest", op, subop, "-"], GOOD) == (0, b"", "")
        assert run([driver, "guest", op, subop, "-"], b"<<garbage") == (0, b"", "")


def test_unknown_operation_cli(cli):
    r = cli.hook("lxc", "ct", "attach", b"<<garbage")
    assert (r.rc, r.stdout, r.stderr) == (0, b"", ""), r.describe()
    assert cli.applied() == []


@pytest.mark.parametrize("argv", [[], ["lxc"], ["lxc", "ct"]])
def test_too_few_arguments_is_usage(argv):
    rc, out, err = run(argv)
    assert rc == 2 and out == b""
    assert err == "usage: vzlibvirt hook DRIVER OBJECT OPERATION [SUBOP [EXTRA]]\n"


@pytest.mark.parametrize("driver", ["xen", "", "LXC", "qemu;reboot"])
def test_unknown_driver_is_usage(driver):
    rc, out, err = run([driver, "ct", "prepare", "begin", "-"], GOOD)
    assert rc == 2 and out == b""
    assert err == f"vzlibvirt: unknown hook driver {driver!r} (qemu, lxc or network)\n"


def test_subop_and_extra_are_optional():
    assert run(["qemu", "vm", "migrate"], ODD) == (0, ODD, "")


def test_prepare_good_input_applies_nothing(cli):
    on_lo = example("lxc").replace(b'bridge="br0"', b'bridge="lo"').replace(
        b"<source bridge='br0'/>", b"<source bridge='lo'/>")  # a device that exists
    for driver, xml in (("lxc", GOOD), ("lxc", on_lo),
                        ("qemu", domain_xml("vm", driver="kvm",
                                            interfaces=[routed(M1, ["2001:db8::7"])]))):
        r = cli.hook(driver, "g", "prepare", xml)
        assert (r.rc, r.stdout, r.stderr) == (0, b"", ""), r.describe()
    assert cli.applied() == []


def test_prepare_with_nothing_managed(cli):
    xml = domain_xml("ct", interfaces=[{"mac": M1, "type": "ethernet"}])
    r = cli.hook("lxc", "ct", "prepare", xml)
    assert (r.rc, r.stdout, r.stderr) == (0, b"", ""), r.describe()


def test_prepare_refuses_a_missing_bridge_with_the_hint(cli):
    xml = domain_xml("ct", interfaces=[{"mac": M1, "vz": {"mode": "bridged",
                                                          "bridge": "vzno-such-br"}}])
    cli.hook("lxc", "ct", "prepare", xml).assert_refused(
        "bridge vzno-such-br does not exist; create it with 'vzlibvirt bridge create "
        "vzno-such-br", domain="ct", mac=M1)
    assert cli.applied() == []


@pytest.mark.parametrize("op,subop", [("stopped", "end"), ("release", "end")])
def test_stop_without_a_record_is_a_silent_no_op(cli, op, subop):
    r = cli.hook("lxc", "ct", op, GOOD, subop=subop)
    assert (r.rc, r.stdout, r.stderr) == (0, b"", ""), r.describe()
    assert cli.applied() == []


def test_prepare_empty_stdin_and_oversized(cli):
    cli.hook("lxc", "ct", "prepare", b"").assert_refused("no XML on standard input",
                                                         domain="ct")
    cli.hook("qemu", "vm", "migrate", b" " * (MAX_XML_BYTES + 1)).assert_refused(
        f"XML input is larger than {MAX_XML_BYTES} bytes", domain="vm")


def test_prepare_requires_a_uuid(cli):
    xml = (b"<domain type='lxc'><name>ct</name><devices><interface type='ethernet'>"
           b"<mac address='52:54:00:aa:00:01'/><ip address='198.51.100.7' prefix='32'/>"
           b"</interface></devices></domain>")
    cli.hook("lxc", "ct", "prepare", xml).assert_refused("domain XML has no <uuid>",
                                                         domain="ct")
