"""Real routing daemons in a network namespace: BIRD 2 and FRR (zebra + bgpd), each with
its configuration, sockets, pid files and logs in a private directory, so several run on
one machine and nothing of the machine's own /etc/frr, /run/frr or /run/bird is used.

Used by the netns tests of `routing-config` (docs/bgp.md) and by the lab's BGP fabric
(fabric.py), whose daemons outlive the `lab up` that started them: they get a fixed
directory and are stopped through their pid files. The routers' own configurations
(accept everything, install into the kernel) are here too: they play the top-of-rack
router, which is not vzlibvirt's to configure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import procs as lab_procs
from .runner import in_netns
from .sh import LabError, run, wait_for

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FRR_DIR = Path("/usr/lib/frr")
FRR_USER = "frr"  # Debian's FRR drops to this user after start; it must own its dirs
FRR_TMP = Path("/var/tmp/frr")  # bgpd makes NAME.PID there for crash logs, kept on exit


def daemons_missing() -> str | None:
    """What is not installed, or None (Debian packages bird2 and frr)."""
    need = {"bird": shutil.which("bird"), "birdc": shutil.which("birdc"),
            "zebra": (FRR_DIR / "zebra").exists() and "zebra",
            "bgpd": (FRR_DIR / "bgpd").exists() and "bgpd", "vtysh": shutil.which("vtysh")}
    missing = [name for name, found in need.items() if not found]
    return f"missing {', '.join(missing)} (apt-get install bird2 frr)" if missing else None


@dataclass
class _Daemons(ABC):
    """Processes started in namespace `ns`, their files under a private dir: DIR when
    given (the lab's, readable by user frr), else a fresh temp dir."""

    ns: str
    config: str = ""  # "" for a handle on daemons started earlier (vtysh, birdc, stop)
    dir: Path | None = None
    procs: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.dir is None:
            # not under pytest's tmp_path: its root is mode 0700, and FRR runs as user frr
            self.dir = Path(tempfile.mkdtemp(prefix="vzrouter-"))
        else:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.out", "wb")  # noqa: SIM115 (the child keeps it)
        try:
            self.procs.append(subprocess.Popen([*in_netns(self.ns), *argv], stdout=log,
                                               stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL,
                                               start_new_session=True))
        finally:
            log.close()

    def _check_running(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise LabError(f"{p.args[len(in_netns(self.ns))]} in {self.ns} exited "
                               f"({p.returncode}): {self.logs()}")

    def logs(self) -> str:
        return " | ".join(f"{f.name}: {f.read_text(errors='replace')[-600:]}"
                          for f in sorted(self.dir.glob("*.out")))

    def running(self) -> bool:
        """Every daemon of its pid files alive (also those another process started)."""
        pids = self._pids()
        return bool(pids) and len(pids) == len(list(self.dir.glob("*.pid")))

    def _pids(self) -> set[int]:
        """Live pids of the pid files in the dir, in namespace `ns` (a stale file of an
        earlier run never names someone else's process)."""
        want = lab_procs.netns_id(self.ns)
        found = set()
        for f in self.dir.glob("*.pid"):
            try:
                pid = int(f.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if want and lab_procs.netns_of(pid) == want:
                found.add(pid)
        return found

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.procs.clear()
        lab_procs.kill_all(self._pids())  # daemons that another process started
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:  # a daemon that did start must not outlive the failure
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    @abstractmethod
    def start(self) -> _Daemons:
        """Write the configuration, check it, start the daemon(s), wait until they answer."""


class Bird(_Daemons):
    """BIRD 2 in the foreground (`bird -f`), its control socket in the private dir."""

    @property
    def socket(self) -> Path:
        return self.dir / "bird.ctl"

    def start(self) -> Bird:
        conf = self.dir / "bird.conf"
        conf.write_text(self.config)
        run(["bird", "-p", "-c", str(conf)])  # a syntax error fails here, with its line
        self._spawn("bird", ["bird", "-f", "-c", str(conf), "-s", str(self.socket),
                             "-P", str(self.dir / "bird.pid")])
        if not wait_for(lambda: self._check_running() or self.socket.exists(), timeout=20):
            raise LabError(f"bird in {self.ns} did not start: {self.logs()}")
        return self

    def cli(self, *command: str) -> str:
        return run(["birdc", "-s", str(self.socket), *command], timeout=30).stdout

    def established(self, protocol: str) -> bool:
        return "Established" in self.cli("show", "protocols", protocol)


class Frr(_Daemons):
    """FRR's zebra and bgpd started directly (no watchfrr), as user frr, with the
    configuration for bgpd, the zserv and vty sockets and the pid files in the private
    dir; `vtysh` reaches them through that dir."""

    def start(self) -> Frr:
        user = pwd.getpwnam(FRR_USER)
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        conf, empty = self.dir / "frr.conf", self.dir / "zebra.conf"
        conf.write_text(self.config)
        empty.write_text("")
        for f in (conf, empty):
            os.chown(f, user.pw_uid, user.pw_gid)
        self._check_config(conf)
        zserv = str(self.dir / "zserv.api")
        common = ["--vty_socket", str(self.dir), "-z", zserv, "-A", "127.0.0.1", "-P", "0",
                  "--log", "stdout"]
        self._spawn("zebra", [str(FRR_DIR / "zebra"), "-f", str(empty), "-i",
                              str(self.dir / "zebra.pid"), *common])
        if not wait_for(lambda: self._check_running() or Path(zserv).exists(), timeout=20):
            raise LabError(f"zebra in {self.ns} did not start: {self.logs()}")
        self._spawn("bgpd", [str(FRR_DIR / "bgpd"), "-f", str(conf), "-i",
                             str(self.dir / "bgpd.pid"), *common])
        bgpd_vty = self.dir / "bgpd.vty"
        if not wait_for(lambda: self._check_running() or bgpd_vty.exists(), timeout=20):
            raise LabError(f"bgpd in {self.ns} did not start: {self.logs()}")
        return self

    def _check_config(self, conf: Path) -> None:
        """bgpd's dry run; it exits 0 whatever it found, so its error lines decide."""
        # `ip netns exec` execs bgpd in place: the pid names bgpd's crash-log dir
        proc = subprocess.Popen([*in_netns(self.ns), str(FRR_DIR / "bgpd"), "-C", "-f",
                                 str(conf), "--log", "stdout"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise LabError(f"bgpd -C {conf} timed out") from exc
        finally:
            _forget_tmp({proc.pid})
        errors = [line for line in out.splitlines() if "[EC " in line]
        if errors:
            raise LabError(f"bgpd refuses {conf}: {' | '.join(errors)}")

    def stop(self) -> None:
        pids = self._pids() | {p.pid for p in self.procs}
        super().stop()
        _forget_tmp(pids)

    def vtysh(self, *commands: str) -> str:
        args = ["vtysh", "--vty_socket", str(self.dir)]
        for c in commands:
            args += ["-c", c]
        return run(args, timeout=30).stdout

    def bgp_json(self, family: str = "ipv4") -> dict:
        return json.loads(self.vtysh(f"show bgp {family} unicast json") or "{}")

    def established(self) -> bool:
        summary = json.loads(self.vtysh("show bgp summary json") or "{}")
        peers = [p for fam in summary.values() if isinstance(fam, dict)
                 for p in fam.get("peers", {}).values()]
        return bool(peers) and all(p.get("state") == "Established" for p in peers)


def _forget_tmp(pids: set[int]) -> None:
    for pid in pids:
        for name in ("bgpd", "zebra"):
            shutil.rmtree(FRR_TMP / f"{name}.{pid}", ignore_errors=True)


# -- the router's side: accept every route a host announces, install it in the kernel -----

GUEST_NETS = (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8:200::/48"))


def learned_routes(ns: str, watched: Sequence[IPNetwork] = GUEST_NETS) -> dict[str, str]:
    """The kernel routes of router namespace NS into the WATCHED prefixes that have a
    gateway: what it learned through BGP and installed ({destination: next hop})."""
    out = {}
    for fam in ("-4", "-6"):
        for r in json.loads(run(["ip", "-n", ns, "-j", fam, "route", "show"]).stdout or "[]"):
            dst = r.get("dst", "")
            if "gateway" in r and dst != "default":
                net = ipaddress.ip_network(dst)
                if any(net.subnet_of(w) for w in watched if w.version == net.version):
                    out[str(net.network_address)] = r["gateway"]
    return out


@dataclass(frozen=True)
class Neighbour:
    address: str
    asn: int


def router_frr_config(asn: int, router_id: str, neighbours: list[Neighbour]) -> str:
    lines = ["frr defaults traditional", f"router bgp {asn}", f" bgp router-id {router_id}",
             " no bgp ebgp-requires-policy", " no bgp default ipv4-unicast"]
    for n in neighbours:
        lines += [f" neighbor {n.address} remote-as {n.asn}",
                  f" neighbor {n.address} timers connect 1"]
    for fam in ("ipv4", "ipv6"):
        lines.append(f" address-family {fam} unicast")
        lines += [f"  neighbor {n.address} activate" for n in neighbours
                  if (":" in n.address) == (fam == "ipv6")]
        lines.append(" exit-address-family")
    return "\n".join([*lines, "exit", ""])


def router_bird_config(asn: int, router_id: str, neighbours: list[Neighbour]) -> str:
    lines = [f"router id {router_id};", "protocol device {}"]
    for fam in ("ipv4", "ipv6"):
        lines.append(f"protocol kernel {{ {fam} {{ import none; export all; }}; }}")
    for n, nb in enumerate(neighbours, start=1):
        fam = "ipv6" if ":" in nb.address else "ipv4"
        lines += [f"protocol bgp host{n} {{", f"  local as {asn};",
                  f"  neighbor {nb.address} as {nb.asn};",
                  "  connect delay time 1;", "  connect retry time 1;",
                  f"  {fam} {{ import all; export none; }};", "}"]
    return "\n".join(lines) + "\n"
