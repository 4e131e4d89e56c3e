"""When the gate last served a paid request: what background work waits for.

Settling costs the node CPU (encoding and signing a batch, and, on a local
chain, executing it on the same cores) and, inside this process, the GIL.
A reconciliation pass that runs while paid requests are being served makes
each of them wait: about 1 ms a request on the development VMs. So the
reconciler's loop asks `idle_seconds` before a pass and before each of its
batches, and waits, for a bounded time, for a quiet moment
(`chain/reconciler.py`, `Reconciler.run_forever`). Only the event loop
changes the counts; the pass's worker thread only reads them (no lock: a
read of an int or a float is atomic).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Activity"]


class Activity:
    """Paid requests in flight, and when the last one ended.

    Args:
        clock: monotonic seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._in_flight = 0
        self._last_end = clock()

    def started(self) -> None:
        """A paid request came in."""
        self._in_flight += 1

    def finished(self) -> None:
        """A paid request is done (answered, refused, or its client gone)."""
        self._in_flight -= 1
        self._last_end = self._clock()

    def idle_seconds(self) -> float:
        """Seconds since the last paid request ended; 0 while one is in flight."""
        return 0.0 if self._in_flight else self._clock() - self._last_end
