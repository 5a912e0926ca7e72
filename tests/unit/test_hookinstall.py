"""install-hooks / uninstall-hooks on a temporary hooks dir, and the shim's own filter."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from vzlibvirt import contract
from vzlibvirt import hookinstall as hi

DRIVERS = ("qemu", "lxc", "network")


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_install_twice_then_uninstall(tmp_path, capsys):
    hooks = tmp_path / "hooks"
    (hooks / "qemu.d").mkdir(parents=True)
    other = hooks / "qemu.d" / "10-admin"
    other.write_text("#!/bin/sh\nexit 0\n")
    other.chmod(0o755)
    cfg = str(tmp_path / "my conf's.toml")

    assert hi.install_main(["--hooks-dir", str(hooks), "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "restart" in out and "lxc" in out and "network" in out
    assert "qemu" not in out.split("restarted")[1]  # qemu.d already had a hook
    first = tree(hooks)
    assert set(first) == {"qemu.d/10-admin"} | {f"{d}.d/50-vzlibvirt" for d in DRIVERS}
    for d in DRIVERS:
        shim = hooks / f"{d}.d" / "50-vzlibvirt"
        assert shim.stat().st_mode & stat.S_IXUSR
        assert hi.MARKER in shim.read_text()

    assert hi.install_main(["--hooks-dir", str(hooks), "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "restart" not in out and "unchanged" in out
    assert tree(hooks) == first

    assert hi.uninstall_main(["--hooks-dir", str(hooks)]) == 0
    assert tree(hooks) == {"qemu.d/10-admin": "#!/bin/sh\nexit 0\n"}
    assert hi.uninstall_main(["--hooks-dir", str(hooks)]) == 0  # idempotent too


def test_foreign_file_is_never_overwritten_or_removed(tmp_path):
    hooks = tmp_path
    (hooks / "lxc.d").mkdir()
    foreign = hooks / "lxc.d" / "50-vzlibvirt"
    foreign.write_text("#!/bin/sh\necho mine\n")
    assert hi.install_main(["--hooks-dir", str(hooks)]) == 1
    hi.uninstall_main(["--hooks-dir", str(hooks)])
    assert foreign.read_text() == "#!/bin/sh\necho mine\n"


@pytest.fixture
def fake_python(tmp_path) -> Path:
    """Stands in for the interpreter: records its env and argv."""
    py = tmp_path / "bin dir" / "py'thon"
    py.parent.mkdir()
    py.write_text('#!/bin/sh\nprintf "%s|%s" "$VZLIBVIRT_CONFIG" "$*"\n')
    py.chmod(0o755)
    return py


def run_shim(text: str, tmp_path: Path, *args: str,
             **env: str) -> subprocess.CompletedProcess:
    """The shim run as libvirt runs it (its environment, plus ENV) with ARGS."""
    shim = tmp_path / "shim"
    shim.write_text(text)
    shim.chmod(0o755)
    libvirt_env = {"PATH": "/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}  # what libvirt gives
    return subprocess.run([str(shim), *args], capture_output=True, text=True,
                          env={**libvirt_env, **env}, input="<domain/>")


@pytest.fixture
def no_udev(tmp_path, monkeypatch) -> Path:
    """The gated operations' paths, absent until a test makes them (never /run/udev)."""
    gate = tmp_path / "udev control"
    monkeypatch.setattr(contract, "GATED_OPS", {d: {op: str(gate) for op in ops}
                                                for d, ops in contract.GATED_OPS.items()})
    return gate


@pytest.mark.parametrize("driver", ["qemu", "lxc"])
def test_shim_domain_ops(driver, tmp_path, fake_python, no_udev):
    cfg = "/etc/odd path/it's $HOME `x`.toml"
    text = hi.render(driver, str(fake_python), cfg)
    for op in contract.PYTHON_OPS[driver]:
        r = run_shim(text, tmp_path, "dom1", op, "begin", "-")
        assert r.returncode == 0
        assert r.stdout == f"{cfg}|-S -E {hi.CLIENT} {driver} dom1 {op} begin -"
    for op in contract.FILTER_OPS:  # XML filters: the XML comes back unchanged, no Python
        if op in contract.PYTHON_OPS[driver]:
            continue  # qemu's `migrate` marks an incoming domain (and echoes in Python)
        r = run_shim(text, tmp_path, "dom1", op, "begin", "-")
        assert (r.returncode, r.stdout) == (0, "<domain/>")
    for op in ("start", "stopped-not", "shutdown", "migrate-x", ""):
        r = run_shim(text, tmp_path, "dom1", op, "end", "-")
        assert (r.returncode, r.stdout) == (0, ""), op  # Python never started


def test_shim_lxc_start_reaches_python_only_where_udev_runs(tmp_path, fake_python, no_udev):
    """LXC's `start` restores veth MACs that udev replaced (veth_mac.py): no udev, no
    Python; qemu's `start` never reaches Python."""
    cfg = "/etc/vzlibvirt/vzlibvirt.toml"
    lxc, qemu = (hi.render(d, str(fake_python), cfg) for d in ("lxc", "qemu"))
    assert run_shim(lxc, tmp_path, "ct1", "start", "begin", "-").stdout == ""
    no_udev.write_text("")
    r = run_shim(lxc, tmp_path, "ct1", "start", "begin", "-")
    assert (r.returncode, r.stdout) == (0, f"{cfg}|-S -E {hi.CLIENT} lxc ct1 start begin -")
    assert run_shim(qemu, tmp_path, "vm1", "start", "begin", "-").stdout == ""


UUID = "0b1f6a2e-1d6c-4a55-9c8d-2f1e7d6c0a01"
XML = f"<domain type='kvm' id='3'>\n  <name>dom1</name>\n  <uuid>{UUID}</uuid>\n</domain>\n"


@pytest.mark.parametrize("driver", ["qemu", "lxc"])
def test_shim_stop_ops_start_python_only_for_recorded_domains(driver, tmp_path, fake_python):
    """stopped/release: the shell reads the <uuid> and looks for the state record."""
    state = tmp_path / "state dir"
    text = hi.render(driver, str(fake_python), None, state_dir=str(state))
    shim = tmp_path / "shim"
    shim.write_text(text.replace('"$VZLIBVIRT_CONFIG"', '"$VZLIBVIRT_DOMAIN_UUID"'))
    shim.chmod(0o755)
    fake_python.write_text('#!/bin/sh\nprintf "%s|%s" "$VZLIBVIRT_DOMAIN_UUID" "$*"\n')

    def run(op, xml=XML):
        return subprocess.run([str(shim), "dom1", op, "end", "-"], capture_output=True,
                              text=True, input=xml, env={"PATH": "/sbin:/usr/bin:/sbin:/bin"})

    for op in contract.STOP_OPS:  # no record: nothing to remove, Python never starts
        assert (run(op).returncode, run(op).stdout) == (0, "")
    record = contract.record_path(state, contract.state_key(driver, UUID))
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    for op in contract.STOP_OPS:
        r = run(op)
        assert (r.returncode, r.stdout) == (0, f"{UUID}|-S -E {hi.CLIENT} {driver} dom1 {op} "
                                                "end -")
    for bad in ("<domain><name>x</name></domain>", f"<uuid>../../{UUID}</uuid>"):
        r = run("stopped", bad)
        assert r.returncode == 1 and "no valid <uuid>" in r.stderr and r.stdout == ""


@pytest.mark.parametrize("driver", ["qemu", "lxc"])
@pytest.mark.parametrize("xml", [XML.replace("\n", ""), XML.replace("</uuid>\n", "</uuid>")[:-1]],
                         ids=["one-line", "uuid-on-the-last-line"])
def test_shim_finds_the_uuid_without_a_final_newline(driver, xml, tmp_path, fake_python):
    """libvirt ends its XML with a newline, but the shim must not depend on it: a last
    line without one still counts, or stopped/release would leave the wiring in place."""
    assert not xml.endswith("\n") and xml.count("<uuid>") == 1
    state = tmp_path / "state"
    record = contract.record_path(state, contract.state_key(driver, UUID))
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    fake_python.write_text('#!/bin/sh\nprintf "%s|%s" "$VZLIBVIRT_DOMAIN_UUID" "$*"\n')
    shim = tmp_path / "shim"
    shim.write_text(hi.render(driver, str(fake_python), None, str(tmp_path / "no-agent.sock"),
                              str(state)))
    for op in contract.STOP_OPS:
        r = subprocess.run(["/bin/sh", str(shim), "dom1", op, "end", "-"], input=xml,
                           capture_output=True, text=True,
                           env={"PATH": "/sbin:/usr/bin:/sbin:/bin"})
        assert (r.returncode, r.stderr) == (0, ""), op
        assert r.stdout == f"{UUID}|-S -E {hi.CLIENT} {driver} dom1 {op} end -"


@pytest.mark.parametrize("driver", ["qemu", "lxc"])
def test_shim_leaves_reconnect_to_a_living_agent_that_follows_the_driver(driver, tmp_path,
                                                                         fake_python):
    """After a libvirtd restart the agent that follows the driver's libvirt events
    reconciles every running guest; the shim ends `reconnect` only while that agent
    (its pid in following/<driver>) lives, else the hook re-applies as before."""
    state = tmp_path / "state dir"
    text = hi.render(driver, str(fake_python), None, state_dir=str(state))
    following = contract.following_path(state, driver)
    to_python = f"|-S -E {hi.CLIENT} {driver} dom1 reconnect begin -"

    def reconnect(**env: str) -> str:
        r = run_shim(text, tmp_path, "dom1", "reconnect", "begin", "-", **env)
        assert (r.returncode, r.stderr) == (0, "")
        return r.stdout

    assert reconnect() == to_python  # no agent follows
    assert reconnect(pid=str(os.getpid())) == to_python  # not from the environment
    following.parent.mkdir(parents=True)
    # empty, junk, and a pid past the kernel's largest (2^22): no process holds it
    for junk in ("", "x1\n", "../self\n", f"{2**22 + 1}\n"):
        following.write_text(junk)
        assert reconnect() == to_python, junk
    following.write_text(f"{os.getpid()}\n")  # a living agent: Python never starts
    assert reconnect() == ""
    other = "lxc" if driver == "qemu" else "qemu"
    contract.following_path(state, other).write_text(f"{os.getpid()}\n")
    following.unlink()  # the other driver's agent does not count
    assert reconnect() == to_python
    following.write_text(f"{os.getpid()}\n")
    for op in contract.PYTHON_OPS[driver]:  # and no other operation is left to it
        if op not in contract.AGENT_RECONCILED_OPS:
            r = run_shim(text, tmp_path, "dom1", op, "begin", "-")
            assert r.stdout.endswith(f"{driver} dom1 {op} begin -"), op


def test_shim_network_only_start(tmp_path, fake_python):
    text = hi.render("network", str(fake_python), None)
    r = run_shim(text, tmp_path, "default", "start", "begin", "-")
    assert r.stdout == f"|-S -E {hi.CLIENT} network default start begin -"
    for op in ("started", "stopped", "port-created", "updated"):
        assert run_shim(text, tmp_path, "default", op, "begin", "-").stdout == ""


def test_shim_uses_this_interpreter(tmp_path):
    hi.install(tmp_path, "/opt/py/bin/python3", None)
    text = (tmp_path / "qemu.d" / "50-vzlibvirt").read_text()
    assert f"exec /opt/py/bin/python3 -S -E {hi.CLIENT} qemu \"$@\"" in text
    assert "VZLIBVIRT_CONFIG" not in text
    assert os.access(tmp_path / "qemu.d" / "50-vzlibvirt", os.X_OK)


def test_install_says_how_to_name_the_route_protocol(tmp_path, capsys):
    """The number comes from contract.py; the line is what iproute2 reads in rt_protos.d."""
    assert hi.install_main(["--hooks-dir", str(tmp_path / "hooks")]) == 0
    out = capsys.readouterr().out
    assert contract.ROUTE_PROTOCOL == 247 and contract.ROUTE_PROTOCOL_NAME == "vzlibvirt"
    assert ("put the line '247 vzlibvirt' into /etc/iproute2/rt_protos.d/vzlibvirt.conf"
            in out)
    assert "`ip route show proto 247`" in out
    assert not (tmp_path / "etc").exists()  # told, not written
