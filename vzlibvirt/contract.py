"""The facts that the shim, the hook clients, the hook, the state store, the agent and
the config share, each spelled once.

Why a module of its own: these facts cross languages and layers. The /bin/sh shim is
rendered from the tables below (hookinstall.py), the Perl client's copies are checked
against them by a test (tests/unit/test_contract.py), and the Python client imports this
module under `python -S -E` on the hook's hot path. So it imports no other vzlibvirt
module and, at module level, nothing but builtins: `uuid`, `re`, `typing` or
`dataclasses` would each cost that path milliseconds.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

# -- libvirt's hook calls: DRIVER OBJECT OPERATION SUBOP EXTRA, XML on stdin ----------
DOMAIN_DRIVERS = ("qemu", "lxc")
NETWORK_DRIVER = "network"
DRIVERS = (*DOMAIN_DRIVERS, NETWORK_DRIVER)
# The operations that always reach Python, per driver; every other one ends in the shim.
# `start` is not one: the engine wires at `started` (docs/wiring-point.md), so skipping
# `start` saves one interpreter start per guest boot (LXC's: see GATED_OPS).
PYTHON_OPS = {
    "qemu": ("migrate", "prepare", "started", "reconnect"),
    "lxc": ("prepare", "started", "reconnect"),
    NETWORK_DRIVER: ("start",),
}
# Domain drivers only. XML filters: libvirt takes stdout as the new XML, so it goes back
# unchanged; a filter that is also in PYTHON_OPS (qemu's `migrate`: the destination
# marks the domain incoming, docs/migration.md) reaches Python, the others end in `cat`.
# Stop operations remove what the domain's record lists; the shim starts
# Python for them only when that record exists (the second of the two finds none).
FILTER_OPS = ("migrate", "restore")
# Operations that reach Python only where a path exists. LXC's `start`: the container's
# veth ends are still in the host namespace, where systemd-udevd may have given them a
# MAC of its own (veth_mac.py); a host without udev has nothing to check.
UDEV_CONTROL = "/run/udev/control"  # systemd-udevd's socket: udev runs on this host
UDEV_DATA_DIR = "/run/udev/data"  # its database: n<ifindex> once it is done with a device
GATED_OPS = {"lxc": {"start": UDEV_CONTROL}}
STOP_OPS = ("stopped", "release")
# Operations the shim ends when the agent that follows this driver's libvirt events lives
# (its pid in following/<driver>): after a libvirtd restart that agent reconciles every
# running domain of the driver once libvirtd serves again, so a guest's `reconnect` need
# not start a client before libvirtd serves (4 ms each: 4 s of its start with 1,000
# guests, docs/performance.md). Without that agent the hook re-applies as before.
AGENT_RECONCILED_OPS = ("reconnect",)

# -- defaults and names users see (the product contract) ------------------------------
CONFIG_ENV = "VZLIBVIRT_CONFIG"
DEFAULT_CONFIG = "/etc/vzlibvirt/vzlibvirt.toml"
DEFAULT_STATE_DIR = "/run/vzlibvirt"  # a tmpfs: the kernel entries it describes die with a reboot
DEFAULT_SOCKET = f"{DEFAULT_STATE_DIR}/agent.sock"
DEFAULT_URIS = ("qemu:///system", "lxc:///system")  # [agent] connect, reconcile, set
GATEWAY4 = "169.254.0.1"
GATEWAY6 = "fe80::1"
XMLNS = "http://vzlibvirt.org/xmlns/network/1.0"
# Above libvirt's own limit (virsh reads a domain XML file of at most 10 MiB): a foreign
# guest with a large <metadata> of another tool must still pass untouched (issue 13).
MAX_XML_BYTES = 16 << 20
# Every guest route carries this route protocol, so `ip route show proto 247` lists them
# and a routing daemon exports exactly them (BIRD 2: `krt_source = 247`). FRR's zebra
# drops the protocol of foreign routes, so they also carry this metric, which zebra keeps
# (below 2^24: its top byte would be read as an admin distance); docs/bgp.md.
ROUTE_PROTOCOL = 247
ROUTE_PROTOCOL_NAME = "vzlibvirt"  # its name in /etc/iproute2/rt_protos.d/
ROUTE_METRIC = 247
NEIGHBOUR_DEVS_POLICIES = ("detect", "all", "none")  # besides a list of device names

# -- the shim's call context, in its environment --------------------------------------
AGENT_SOCKET_ENV = "VZLIBVIRT_AGENT_SOCKET"
NO_AGENT = "none"  # as AGENT_SOCKET_ENV: run the engine in the hook's own process
DOMAIN_UUID_ENV = "VZLIBVIRT_DOMAIN_UUID"  # the shim read the <uuid>, and so stdin's head
STATE_DIR_ENV = "VZLIBVIRT_STATE_DIR"  # the state dir the shim looked in
FORWARDED_ENV = (DOMAIN_UUID_ENV, STATE_DIR_ENV)  # what a client hands on to the agent
CLIENT_TIMEOUT_S = 120  # a wire takes milliseconds; this only guards against a wedged agent

# -- the state layout under the state dir ---------------------------------------------
#   domains/<driver>-<uuid>.json   one record per wired domain
#   ips/<ip>                       which domain holds a guest IP
#   incoming/<driver>-<uuid>       a live migration's destination: `migrate` was called
#   following/<driver>             the pid of the agent that follows that driver's events
#   lock                           the host-wide flock around every change
DOMAINS_DIR = "domains"
CLAIMS_DIR = "ips"
INCOMING_DIR = "incoming"
FOLLOWING_DIR = "following"
LOCK_NAME = "lock"
RECORD_SUFFIX = ".json"


def state_key(driver: str, uuid: str) -> str:
    """A domain's key in the state store: file-name safe once `uuid` is canonical
    (canonical_uuid), and the form libvirt writes, which the shim looks for as it is."""
    return f"{driver}-{uuid}"


def key_driver(key: str) -> str:
    return key.partition("-")[0]


def canonical_uuid(text: str) -> str:
    """The lower-case, dashed form of a UUID; ValueError if `text` is none."""
    import uuid  # ~8 ms: only on the paths that build a key

    return str(uuid.UUID(text))


def domains_dir(state_dir: "Path") -> "Path":
    return state_dir / DOMAINS_DIR


def record_path(state_dir: "Path", key: str) -> "Path":
    return state_dir / DOMAINS_DIR / f"{key}{RECORD_SUFFIX}"


def record_key(filename: str) -> str | None:
    """The key of a file name in domains/, None for anything that is not a record."""
    if not filename.endswith(RECORD_SUFFIX):
        return None
    return filename[:-len(RECORD_SUFFIX)]


def claims_dir(state_dir: "Path") -> "Path":
    return state_dir / CLAIMS_DIR


def claim_path(state_dir: "Path", ip: str) -> "Path":
    return state_dir / CLAIMS_DIR / ip


def incoming_path(state_dir: "Path", key: str) -> "Path":
    return state_dir / INCOMING_DIR / key


def following_path(state_dir: "Path", driver: str) -> "Path":
    return state_dir / FOLLOWING_DIR / driver


def lock_path(state_dir: "Path") -> "Path":
    return state_dir / LOCK_NAME


# -- the agent's wire format: a list of netstrings (b"<len>:<bytes>,") -----------------
# request [b"hook", env, *argv, xml], env being FORWARDED_ENV as NUL-separated K=V
# pairs; reply [rc, stderr, stdout]; b"ping" is answered [b"0", b"", b"pong"].
def encode(fields: list[bytes]) -> bytes:
    out = []
    for f in fields:
        out.append(b"%d:" % len(f))
        out.append(f)
        out.append(b",")
    return b"".join(out)


def decode(buf: bytes) -> list[bytes]:
    fields, pos = [], 0
    while pos < len(buf):
        colon = buf.index(b":", pos)
        n = int(buf[pos:colon])
        start = colon + 1
        if buf[start + n:start + n + 1] != b",":
            raise ValueError("bad netstring")
        fields.append(buf[start:start + n])
        pos = start + n + 1
    return fields


def recv_all(sock, limit: int | None = None) -> bytes:
    """Read until the peer shuts its side; ValueError past `limit` bytes."""
    chunks, size = [], 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if limit is not None and size > limit:
            raise ValueError("message too large")
        chunks.append(chunk)
