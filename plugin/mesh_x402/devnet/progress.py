"""Progress of a devnet run: a bar on a terminal, plain log lines otherwise.

Progress always goes to stderr, so stdout carries only the report (text or
`--json`). On a terminal one line is redrawn in place (carriage return and
clear-to-end-of-line, no dependency); when stderr is a file or a pipe (CI, a
test), each step is its own timestamped line, which is what a log wants.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Final, TextIO

__all__ = ["Progress"]

_BAR_WIDTH: Final = 24
_CLEAR: Final = "\r\x1b[2K"


class Progress:
    """Reports the steps of a run and the requests within the paying step.

    Args:
        steps: how many `step` calls the run makes (the bar's scale).
        stream: where to write (stderr by default).
        interactive: draw a bar; by default when `stream` is a terminal.
    """

    def __init__(
        self,
        steps: int,
        *,
        stream: TextIO | None = None,
        interactive: bool | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._interactive = self._stream.isatty() if interactive is None else interactive
        self._steps = max(1, steps)
        self._done = 0
        self._label = ""
        self._started = time.monotonic()
        self._open_line = False

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:5.1f}s"

    def _draw(self, fraction: float, text: str) -> None:
        filled = round(fraction * _BAR_WIDTH)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        line = f"devnet [{bar}] {self._elapsed()} {text}"
        # Longer than the terminal, the line would wrap and `\r` could not redraw it.
        width = shutil.get_terminal_size().columns - 1
        self._stream.write(_CLEAR + (line if len(line) <= width else line[: width - 3] + "..."))
        self._stream.flush()
        self._open_line = True

    def _line(self, text: str) -> None:
        self._stream.write(f"devnet {self._elapsed()} {text}\n")
        self._stream.flush()

    def step(self, label: str) -> None:
        """A new step begins (`label` says what it does)."""
        self._label = label
        position = f"[{min(self._done + 1, self._steps)}/{self._steps}]"
        if self._interactive:
            self._draw(self._done / self._steps, f"{position} {label}")
        else:
            self._line(f"{position} {label}")
        self._done += 1

    def tick(self, done: int, total: int, detail: str = "") -> None:
        """Progress inside the current step (e.g. requests answered)."""
        if self._interactive:
            inside = done / total if total else 1.0
            fraction = (self._done - 1 + inside) / self._steps
            self._draw(fraction, f"{self._label}: {done}/{total} {detail}".rstrip())
        else:
            self._line(f"  {done}/{total} {detail}".rstrip())

    def note(self, message: str) -> None:
        """A line worth keeping (a warning, a URL): never overwritten by the bar."""
        if self._interactive and self._open_line:
            self._stream.write(_CLEAR)
            self._open_line = False
        self._line(message)

    def finish(self, message: str = "done") -> None:
        """The run ended: the bar is full (or the last line says so)."""
        if self._interactive:
            self._draw(1.0, message)
            self._stream.write("\n")
            self._stream.flush()
            self._open_line = False
        else:
            self._line(message)
