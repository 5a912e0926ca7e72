"""Fault injection points for the test suite (rollback and crash-consistency tests).

`VZLIBVIRT_FAULT=fail:N` makes the N-th checkpoint of a wire/unwire raise, and
`VZLIBVIRT_FAULT=kill:N` makes it SIGKILL its own process, so tests can prove that a
failure or a crash at every step leaves the host recoverable. Unset, it costs one
dictionary lookup per step.
"""

from __future__ import annotations

import os
import signal

from vzlibvirt.errors import HostError

_spec = os.environ.get("VZLIBVIRT_FAULT", "")
_action, _, _at = _spec.partition(":")
_target = int(_at) if _at.isdigit() else -1
_count = 0
_trace = os.environ.get("VZLIBVIRT_FAULT_TRACE")


def checkpoint(step: str) -> None:
    """Mark one step of a wire/unwire; raise or die here if the test asked for it."""
    global _count
    _count += 1
    if _trace:
        with open(_trace, "a") as f:
            f.write(f"{_count} {step}\n")
    if _count != _target:
        return
    if _action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if _action == "fail":
        raise HostError(f"injected failure at step {_count} ({step})")
