"""`vzlibvirt plan [--driver qemu|lxc] FILE` through the real command line.

`plan` needs no root: one test runs it as `nobody`. Paths that touch no netlink (plan,
prepare, migrate/restore, operations with nothing to do, every refusal) must not import
the netlink layer: checked with `python -X importtime`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.unit.test_domain_xml import CONTRACT_EXAMPLE, example
from vzlibvirt.lab.domxml import domain_xml, routed

M1 = "52:54:00:aa:00:01"


def test_plan_of_the_contract_example(cli, tmp_path):
    f = tmp_path / "ct101.xml"
    f.write_bytes(example())
    r = cli.plan(str(f))
    assert (r.rc, r.stderr) == (0, ""), r.describe()
    out = r.stdout.decode()
    assert out.startswith("domain 'ct101' (lxc, uuid ")
    assert f"interface {M1}: routed, host device" in out
    assert "route 198.51.100.101/32 dev" in out and "route 2001:db8:100::101/128 dev" in out
    assert "interface 52:54:00:aa:00:02: bridged on br0 (plugged by vzlibvirt)" in out
    assert "interface 52:54:00:aa:00:03: type bridge, left alone" in out
    assert out.endswith("\n") and "\n\n" not in out
    assert cli.applied() == []


def test_plan_reads_stdin_and_honours_driver(cli):
    xml = domain_xml("vm1", driver="kvm", interfaces=[routed(M1, ["198.51.100.7"])])
    r = cli.plan("--driver", "qemu", "-", stdin=xml)
    assert r.rc == 0 and b"domain 'vm1' (qemu" in r.stdout, r.describe()
    cli.plan("--driver", "lxc", "-", stdin=xml).assert_refused(
        "domain type 'kvm' does not match the lxc driver", domain="vm1")


def test_plan_uses_the_host_config(cli):
    cli.write_config('[bridged]\nbridge = "br7"\n[routed]\nneighbour_devs = ["enp0s5"]\n')
    xml = domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7"]),
                                       {"mac": "52:54:00:aa:00:02", "vz": {"mode": "bridged"}}])
    r = cli.plan("-", stdin=xml)
    assert r.rc == 0, r.describe()
    assert b"proxy neighbour on enp0s5" in r.stdout and b"bridged on br7" in r.stdout


def test_plan_without_a_config_file_uses_defaults(cli):
    cli.config.unlink()
    r = cli.plan("-", stdin=domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7"])]))
    assert r.rc == 0 and b"gateway on host device: 169.254.0.1" in r.stdout, r.describe()


def test_plan_of_a_container_with_hostile_names_prints_them_as_data(cli, tmp_path):
    canary = tmp_path / "pwned"
    name = f"$(touch {canary});`touch {canary}`"
    xml = domain_xml("X", interfaces=[routed(M1, ["198.51.100.7"], target="$(reboot)")])
    xml = xml.replace(b"<name>X</name>", f"<name>{name}</name>".encode())
    r = cli.plan("-", stdin=xml)
    assert r.rc == 0, r.describe()
    assert f"domain '{name}'".encode() in r.stdout and b"dev $(reboot)" in r.stdout
    assert not canary.exists()


@pytest.mark.parametrize("make,reason", [
    (lambda d: d / "absent.xml", "cannot read {}: No such file or directory"),
    (lambda d: d, "cannot read {}: Is a directory"),
])
def test_plan_unreadable_file(cli, tmp_path, make, reason):
    path = make(tmp_path)
    cli.plan(str(path)).assert_refused(reason.format(path))


@pytest.mark.parametrize("argv", [
    ("plan",), ("plan", "--driver", "xen", "f.xml"), ("plan", "a.xml", "b.xml"),
    ("plan", "--bogus", "f.xml"), (), ("bogus",), ("hook",), ("hook", "lxc", "ct"),
    ("hook", "xen", "ct", "prepare", "begin", "-"),
])
def test_usage_errors_exit_2(cli, argv):
    r = cli.run(*argv)
    assert r.rc == 2, r.describe()
    assert r.stdout == b"" and r.stderr.strip() and "Traceback" not in r.stderr
    assert cli.applied() == []


def test_help_and_version_exit_0(cli):
    for argv in (("--help",), ("plan", "--help")):
        r = cli.run(*argv)
        assert r.rc == 0 and b"plan" in r.stdout and r.stderr == "", r.describe()
    r = cli.run("--version")
    assert r.rc == 0 and r.stdout.startswith(b"vzlibvirt "), r.describe()


def test_plan_runs_unprivileged(cli):
    """As uid/gid 65534 with no groups: plan works, and refuses bad input the same way."""
    setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if os.geteuid() == 0:
        assert shutil.which("setpriv"), "root without setpriv: cannot drop privileges"
        prefix = tuple(setpriv)
    else:  # already unprivileged
        prefix = ()
    public = Path(tempfile.mkdtemp(prefix="vzlibvirt-plan-"))
    try:
        public.chmod(0o755)
        cfg = public / "vzlibvirt.toml"
        cfg.write_text('[state]\ndir = "/nonexistent/vzlibvirt-state"\n')
        cfg.chmod(0o644)
        env = {"VZLIBVIRT_CONFIG": str(cfg)}
        who = cli.run("plan", "-", prefix=prefix, cwd=public, **env,
                      stdin=domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7"])]))
        assert who.rc == 0, who.describe()
        assert b"route 198.51.100.7/32" in who.stdout
        bad = cli.run("plan", "-", prefix=prefix, cwd=public, **env,
                      stdin=domain_xml("ct", interfaces=[routed(M1, ["127.0.0.1"])]))
        bad.assert_refused("IP 127.0.0.1 is a loopback address", domain="ct", mac=M1)
        if prefix:
            probe = cli.run("plan", "-", stdin=b"<a", prefix=prefix, cwd=public,
                            python_opts=("-c", "import os; print(os.getuid())"), **env)
            assert probe.stdout.strip() == b"65534", probe.describe()
        assert not Path("/nonexistent/vzlibvirt-state").exists()
    finally:
        shutil.rmtree(public)


# --- the netlink layer stays off the paths that touch no netlink -------------------------

GOOD_CT = domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7"], native=True)])
GOOD_VM = domain_xml("vm", driver="kvm", interfaces=[routed(M1, ["2001:db8::7"])])
BAD = domain_xml("ct", interfaces=[routed(M1, ["224.0.0.1"])])


@pytest.mark.parametrize("argv,stdin,rc", [
    (("plan", "-"), GOOD_CT, 0),
    (("plan", "-"), BAD, 1),
    (("plan", "-"), b"<!DOCTYPE x>", 1),
    (("hook", "lxc", "ct", "prepare", "begin", "-"), GOOD_CT, 0),
    (("hook", "qemu", "vm", "prepare", "begin", "-"), GOOD_VM, 0),
    (("hook", "lxc", "ct", "prepare", "begin", "-"), BAD, 1),
    (("hook", "lxc", "ct", "prepare", "begin", "-"), b"<domain", 1),
    (("hook", "lxc", "ct", "prepare", "begin", "-"), CONTRACT_EXAMPLE.encode(), 1),
    (("hook", "lxc", "ct", "migrate", "begin", "-"), GOOD_CT, 0),
    (("hook", "qemu", "vm", "restore", "begin", "-"), GOOD_VM, 0),
    (("hook", "lxc", "ct", "attach", "begin", "-"), GOOD_CT, 0),
    (("hook", "lxc", "ct", "stopped", "end", "-"), GOOD_CT, 0),
    (("hook", "lxc", "ct", "release", "end", "-"), GOOD_CT, 0),
])
def test_no_netlink_on_paths_without_netlink(cli, argv, stdin, rc):
    r = cli.run(*argv, stdin=stdin, python_opts=("-X", "importtime"))
    assert r.rc == rc, r.describe()
    modules = {line.split("|")[-1].strip() for line in r.stderr.splitlines()
               if line.startswith("import time:")}
    assert "vzlibvirt.cli" in modules, "importtime saw nothing: the check is broken"
    assert "vzlibvirt.netlink" not in modules
    if argv[0] == "plan" or argv[3] == "prepare":
        assert "vzlibvirt.domain_xml" in modules  # the check saw the real work
    assert cli.applied() == []
