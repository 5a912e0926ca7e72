"""One undo idiom for every all-or-nothing change (Incus' reverter).

    r = Reverter()
    do_a(); r.add(undo_a, "a")
    do_b(); r.add(undo_b, "b")
    r.success()            # or, on failure: r.fail() undoes b, then a

The engine (entries of one wire) and `bridge create/delete` (an uplink's addresses and
routes) both register each undo right after its step succeeded.
"""

from __future__ import annotations

from collections.abc import Callable


class Reverter:
    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], object]]] = []

    def add(self, undo: Callable[[], object], what: str = "") -> None:
        """Register the undo of a step that has just succeeded."""
        self._undo.append((what, undo))

    def fail(self) -> list[tuple[str, Exception]]:
        """Run every undo, newest first; an undo that raises does not stop the rest.
        Returns the (what, exception) of the undos that failed."""
        failed = []
        for what, undo in reversed(self._undo):
            try:
                undo()
            except Exception as exc:
                failed.append((what, exc))
        self._undo.clear()
        return failed

    def success(self) -> None:
        """The change is complete: forget the undos."""
        self._undo.clear()
