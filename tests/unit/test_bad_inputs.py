"""The bad-input corpus through the real command line, as libvirt and users run it.

Every file in bad_inputs/ (see cases.toml) goes through
`python -m vzlibvirt hook DRIVER NAME prepare begin -` (XML on stdin) and
`python -m vzlibvirt plan [--driver DRIVER] FILE`: exit 1, nothing on stdout, exactly
one line on stderr that names the domain, the interface (MAC) and the specific reason,
no traceback, and the state dir stays empty. A few inputs are built here instead of
stored (oversized, deeply nested, a FIFO that must never be opened).
"""

from __future__ import annotations

import os
import tomllib
import uuid
from pathlib import Path

import pytest

from vzlibvirt.lab.domxml import domain_xml, routed

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = tomllib.loads((CORPUS / "cases.toml").read_text())["case"]
LIMIT = 1 << 20


def test_corpus_table_matches_files():
    listed = [c["file"] for c in CASES]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    on_disk = sorted(p.name for p in CORPUS.glob("*.xml"))
    assert sorted(listed) == on_disk
    assert len(listed) >= 90
    for c in CASES:
        assert set(c) <= {"file", "domain", "mac", "reason", "driver", "named", "plan"}, c
        assert c["reason"], c


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_bad_input_refused_by_hook_and_plan(cli, case):
    path = CORPUS / case["file"]
    data = path.read_bytes()
    driver = case.get("driver", "lxc")
    plan_args = ("plan", "--driver", driver, str(path)) if "driver" in case else \
        ("plan", str(path))
    hook_args = ("hook", driver, case["domain"], "prepare", "begin", "-")
    calls = [(hook_args, data)]
    if case.get("plan", True):
        calls.append((plan_args, b""))
    results = cli.run_many(calls, workers=2)

    named = case.get("named", True)
    hook_line = results[0].assert_refused(case["reason"], domain=case["domain"],
                                          mac=case.get("mac"))
    if len(results) > 1:
        plan_line = results[1].assert_refused(case["reason"],
                                              domain=case["domain"] if named else None,
                                              mac=case.get("mac"))
        if named:  # the same refusal whichever way the XML arrives
            assert plan_line == hook_line
        else:
            assert not plan_line.startswith("vzlibvirt: domain '"), plan_line
    else:  # `plan` requires no <uuid>: only the hook refuses this one
        plan = cli.run(*plan_args)
        assert plan.rc == 0 and plan.stderr == "", plan.describe()
    if case.get("mac") is None:  # no interface to name: the reason follows the domain
        assert hook_line.startswith(f"vzlibvirt: domain '{case['domain']}': "), hook_line
    assert "root:" not in hook_line  # nothing of /etc/passwd ever leaks
    assert cli.applied() == []


def _named(name: str, body: str) -> bytes:
    u = uuid.uuid5(uuid.NAMESPACE_DNS, name)
    return (f"<domain type='lxc'><name>{name}</name><uuid>{u}</uuid>{body}"
            f"<devices/></domain>").encode()


def test_oversized_xml_refused(cli, tmp_path):
    pad = b"<!--" + b"x" * LIMIT + b"-->"
    data = _named("huge", "").replace(b"<devices/>", pad + b"<devices/>")
    assert len(data) > LIMIT
    f = tmp_path / "huge.xml"
    f.write_bytes(data)
    hook, plan = cli.run_many([(("hook", "lxc", "huge", "prepare", "begin", "-"), data),
                               (("plan", str(f)), b"")], workers=2)
    hook.assert_refused(f"XML input is larger than {LIMIT} bytes", domain="huge")
    plan.assert_refused(f"XML input is larger than {LIMIT} bytes")
    # the hook stops reading at the limit: a never-ending stdin is refused just the same
    endless = cli.run("hook", "lxc", "huge", "prepare", "begin", "-",
                      stdin=b"<domain>" + b" " * (8 * LIMIT))
    endless.assert_refused(f"XML input is larger than {LIMIT} bytes", domain="huge")
    assert cli.applied() == []


def test_deeply_nested_xml_refused(cli):
    depth = 50_000
    data = _named("deep", "<a>" * depth + "</a>" * depth)
    assert len(data) < LIMIT
    cli.hook("lxc", "deep", "prepare", data).assert_refused("malformed XML", domain="deep")


def test_huge_attribute_gives_a_bounded_line(cli):
    xml = domain_xml("big-attr", interfaces=[
        {"mac": "52:54:00:aa:00:01", "vz": {"mode": "M" * 500_000, "ips": ["198.51.100.7"]}}])
    line = cli.hook("lxc", "big-attr", "prepare", xml).assert_refused(
        "unknown mode 'MMMM", domain="big-attr", mac="52:54:00:aa:00:01")
    assert len(line) <= 1000


@pytest.mark.parametrize("form", ["entity", "external-dtd", "parameter-entity"])
def test_external_entities_are_never_opened(cli, tmp_path, form):
    """The entity points at a FIFO: opening it would block until the timeout."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    url = f"file://{fifo}"
    body = f"<domain type='lxc'><name>{'&xxe;' if form == 'entity' else 'x'}</name></domain>"
    doctype = {
        "entity": f'<!DOCTYPE domain [<!ENTITY xxe SYSTEM "{url}">]>',
        "external-dtd": f'<!DOCTYPE domain SYSTEM "{url}">',
        "parameter-entity": f'<!DOCTYPE domain [<!ENTITY % p SYSTEM "{url}"> %p;]>',
    }[form]
    data = f'<?xml version="1.0"?>\n{doctype}\n{body}'.encode()
    f = tmp_path / "xxe.xml"
    f.write_bytes(data)
    hook, plan = cli.run_many([(("hook", "lxc", "xxe", "prepare", "begin", "-"), data),
                               (("plan", str(f)), b"")], workers=2)
    reason = "XML with a DOCTYPE or entity declarations is refused"
    hook.assert_refused(reason, domain="xxe")
    plan.assert_refused(reason)
    # the same documents in UTF-16 (which hides '<!DOCTYPE' from a byte search)
    data16 = data.replace(b'"1.0"', b'"1.0" encoding="UTF-16"').decode().encode("utf-16")
    cli.hook("lxc", "xxe", "prepare", data16).assert_refused("malformed XML", domain="xxe")
    assert cli.applied() == []


def test_shell_metacharacters_are_plain_data(cli, tmp_path):
    """Names that a shell would run: shown verbatim, never executed, in argv and XML."""
    canary = tmp_path / "pwned"
    for name in (f"$(touch {canary})", f"`touch {canary}`", f"a; touch {canary}",
                 f"a && touch {canary} #", f"x' ; touch {canary}; '"):
        xml = domain_xml("shell", interfaces=[routed("52:54:00:aa:00:01", ["127.0.0.9"])])
        xml = xml.replace(b"<name>shell</name>",
                          b"<name>" + name.replace("&", "&amp;").encode() + b"</name>")
        line = cli.hook("lxc", name, "prepare", xml).assert_refused(
            "IP 127.0.0.9 is a loopback address", domain=name, mac="52:54:00:aa:00:01")
        assert name in line
        # malformed XML: the domain in the line comes from argv
        cli.hook("lxc", name, "prepare", b"<domain").assert_refused("malformed XML",
                                                                      domain=name)
    good = domain_xml("shell-ok", interfaces=[routed("52:54:00:aa:00:01", ["198.51.100.9"],
                                                     target="`reboot`;$(id)")])
    ok = cli.hook("lxc", "shell-ok", "prepare", good)
    assert (ok.rc, ok.stdout, ok.stderr) == (0, b"", ""), ok.describe()
    assert not canary.exists()
    assert not (tmp_path / canary.name).exists()
    assert cli.applied() == []


def test_argv_name_with_newline_stays_one_line(cli):
    name = "ct\nvzlibvirt: domain 'other': fine\r\x1b[2J"
    line = cli.hook("lxc", name, "prepare", b"not xml").assert_refused("malformed XML",
                                                                       domain=name)
    assert "\x1b" not in line and "\r" not in line


def test_non_utf8_bytes_in_names_are_refused_cleanly(cli):
    data = _named("latin", "").replace(b"<name>latin</name>", b"<name>caf\xe9</name>")
    cli.hook("lxc", "latin", "prepare", data).assert_refused("malformed XML", domain="latin")
    ok = cli.hook("lxc", "café", "prepare", _named("café", ""))
    assert (ok.rc, ok.stderr) == (0, ""), ok.describe()
