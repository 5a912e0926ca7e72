"""Errors that end a command with exit 1 and one line on stderr.

libvirt shows a refusing hook's stderr in virsh's error, so each refusal must be one
line that names the domain, the interface (MAC) and the reason.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
MAX_LINE = 1000  # characters of an error line


def _oneline(text: str) -> str:
    """Collapse whitespace and control characters so the message is one printable line."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return " ".join(cleaned.split())


class VzError(Exception):
    """A refusal: bad input, a conflict, or a host that cannot take the wiring."""

    def __init__(self, reason: str, *, domain: str | None = None, mac: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.domain = domain
        self.mac = mac

    def with_context(self, *, domain: str | None = None, mac: str | None = None) -> VzError:
        """Fill in the domain / MAC where the raiser did not know them."""
        if self.domain is None:
            self.domain = domain
        if self.mac is None:
            self.mac = mac
        return self

    def line(self) -> str:
        parts = ["vzlibvirt:"]
        if self.domain is not None:
            parts.append(f"domain '{_oneline(self.domain)[:200]}'")
        if self.mac is not None:
            parts.append(f"interface {self.mac}")
        head = " ".join(parts)
        sep = ": " if len(parts) > 1 else " "
        line = _oneline(f"{head}{sep}{self.reason}")
        # reasons quote the offending value, which may be huge: keep the line readable
        return line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + "..."


class ConfigError(VzError):
    """The host configuration file is invalid."""


class ConflictError(VzError):
    """The wiring would take something that belongs to someone else."""


class HostError(VzError):
    """The kernel refused an operation while wiring or unwiring."""


def missing_bridge_error(bridge: str) -> str:
    """The refusal for a guest whose bridge does not exist, with the command that fixes it."""
    return (f"bridge {bridge} does not exist; create it with "
            f"'vzlibvirt bridge create {bridge} --uplink DEV' (or without --uplink for a "
            f"guests-only bridge)")
