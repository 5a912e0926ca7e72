"""Computer X pinging a guest while something happens to it (a live migration, a daemon
restart, `vzlibvirt set`): which echoes went unanswered and the longest silence. The one
loop of the two-host demo, the e2e and system tests and bench/migration_loss.py."""

from __future__ import annotations

import math
import re
import signal
import subprocess
from dataclasses import dataclass

from .runner import in_netns

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=(\d+)")
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


@dataclass(frozen=True)
class Loss:
    sent: int
    received: int
    interval_ms: float
    longest_gap_ms: float  # the longest time between two replies
    replies: tuple[float, ...]  # the reply times (CLOCK_REALTIME, seconds)
    answered: frozenset[int] = frozenset()  # the icmp_seq of each reply

    # ping stops on SIGINT without waiting: the echoes of the last second may still be
    # on their way, and its summary counts them lost
    IN_FLIGHT_S = 1.0

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def lost_ms(self) -> float:
        return self.lost * self.interval_ms

    def judged(self) -> int:
        """How many echoes had their second to come back before ping was stopped."""
        return max(0, self.sent - math.ceil(self.IN_FLIGHT_S * 1000 / self.interval_ms))

    def unanswered(self) -> list[int]:
        """The sequence numbers, among the judged echoes, that got no reply."""
        return sorted(set(range(1, self.judged() + 1)) - self.answered)

    def first_reply_after(self, t: float) -> float | None:
        return next((r for r in self.replies if r >= t), None)

    def describe(self) -> str:
        return (f"{self.lost} of {self.sent} lost ({self.lost_ms:.0f} ms at "
                f"{self.interval_ms:g} ms), longest silence {self.longest_gap_ms:.0f} ms")


class PingLoop:
    """`ping -i INTERVAL -D` from namespace NS; stop() gives the Loss."""

    def __init__(self, ns: str, ip: str, interval_ms: float = 10) -> None:
        self.ip = ip
        self.interval_ms = interval_ms
        self.proc = subprocess.Popen(
            [*in_netns(ns), "ping", "-n", "-D", "-W", "1", "-i", f"{interval_ms / 1000:g}",
             ip], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> Loss:
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        matches = [m for m in map(_REPLY.match, out.splitlines()) if m]
        replies = [float(m.group(1)) for m in matches]
        summary = _SUMMARY.search(out)
        sent, received = (int(summary.group(1)), int(summary.group(2))) if summary \
            else (0, 0)
        gaps = [b - a for a, b in zip(replies, replies[1:], strict=False)]
        return Loss(sent, received, self.interval_ms, max(gaps, default=0.0) * 1000,
                    tuple(replies), frozenset(int(m.group(2)) for m in matches))

    def __enter__(self) -> PingLoop:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
