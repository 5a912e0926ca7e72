"""Issue 5's guarantees through the real libvirtd: a conflict refused by `virsh start`,
ten containers started at once, and libvirtd killed with SIGKILL while guests run (and
one destroyed meanwhile), healed by `reconnect` plus `vzlibvirt reconcile`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.helpers import host_routes, proxies, wait_for
from vzlibvirt.contract import domains_dir
from vzlibvirt.lab import daemon
from vzlibvirt.lab import settings as S
from vzlibvirt.lab.guests import Guest


def _ct(n: int, ip: str) -> Guest:
    return Guest(f"rel{n}", "ct", f"52:54:00:cc:00:{n:02x}", (ip,))


def _records(lab) -> dict[str, dict]:
    d = domains_dir(lab.paths.state)
    return {r["name"]: r for r in (json.loads(p.read_text()) for p in d.glob("*.json"))} \
        if d.is_dir() else {}


def test_conflict_refused_by_virsh_start(lab, run_guests):
    a, b = _ct(1, "198.51.100.131"), _ct(2, "198.51.100.131")
    run_guests(a)
    routes, proxy = host_routes(lab), proxies(lab)
    (result,) = run_guests(b, check=False)
    assert result.returncode != 0
    assert ("already routed to running domain 'rel1'" in result.stderr
            and "vzlibvirt: domain 'rel2'" in result.stderr), result.stderr
    assert host_routes(lab) == routes and proxies(lab) == proxy
    assert set(_records(lab)) >= {"rel1"} and "rel2" not in _records(lab)
    assert lab.ping_from_x("198.51.100.131")


def test_ten_containers_started_at_once(lab, run_guests):
    gs = [_ct(10 + i, f"198.51.100.{140 + i}") for i in range(10)]
    for g in gs:
        lab.undefine(g)
        lab.define(g)
    try:
        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda g: lab.start(g, check=False), gs))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        routes, proxy, records = host_routes(lab), proxies(lab), _records(lab)
        for g in gs:
            assert routes.get(g.ips[0]) == lab.host_dev(g), (g.name, routes)
            assert (g.ips[0], S.NEIGH_DEV) in proxy
            assert records[g.name]["phase"] == "wired"
        assert wait_for(lambda: all(lab.ping_from_x(g.ips[0]) for g in gs), 20)
    finally:
        for g in gs:
            lab.undefine(g)
    assert not any(g.ips[0] in host_routes(lab) for g in gs)
    assert not any(g.name in _records(lab) for g in gs)


def test_libvirtd_sigkill_then_reconnect_and_reconcile(lab, run_guests):
    keep, gone = _ct(30, "198.51.100.161"), _ct(31, "198.51.100.162")
    run_guests(keep, gone)
    pid = daemon.read_pid(lab.paths, "libvirtd")
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10)
    daemon.pidfile(lab.paths, "libvirtd").unlink(missing_ok=True)
    # while libvirtd is down, one container dies (its libvirt_lxc controller is killed)
    ctl = subprocess.run(["pgrep", "-f", f"libvirt_lxc --name {gone.name} "],
                         capture_output=True, text=True).stdout.split()
    assert ctl, "no libvirt_lxc process for the container"
    for p in ctl:
        os.kill(int(p), signal.SIGKILL)
    anchor = daemon.read_pid(lab.paths, "virtlogd")
    daemon.start_daemons(lab.paths, anchor)

    r = lab.vz().run("reconcile", "--connect", lab.paths.uri("lxc"),
                     "--connect", lab.paths.uri("qemu"), timeout=120)
    assert r.rc == 0, r.text + r.stderr
    assert "reconcile:" in r.text
    records = _records(lab)
    assert keep.name in records and gone.name not in records
    proxy = proxies(lab)
    assert (keep.ips[0], S.NEIGH_DEV) in proxy and (gone.ips[0], S.NEIGH_DEV) not in proxy
    assert gone.ips[0] not in host_routes(lab)
    assert wait_for(lambda: lab.ping_from_x(keep.ips[0]), 15)
    status = lab.vz().run("status", "--json", timeout=120)
    rows = {row["domain"]: row for row in json.loads(status.stdout)}
    assert rows[keep.name]["ok"] and gone.name not in rows
