"""Progress of long work on stderr: `edgec tune`'s measurements and `edgec compile`'s kernels.

A bar with counts and an ETA: on a terminal one line redrawn with \\r; otherwise plain lines
where the caller asks for them (`note`), or nothing (`lines=False`: compile, whose output a script
reads). `after`: nothing is drawn until that many seconds have passed since `since` (default:
when the bar was made), so that quick runs print nothing. Steps may come from several threads.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def duration(seconds: float) -> str:
    """'42s', '3m07s', '1h05m'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """`total` steps of `unit` ("measurements", "kernels built")."""

    WIDTH = 150  # characters of a redrawn line

    def __init__(self, total: int, unit: str, stream: TextIO | None = None, width: int = 24,
                 since: float | None = None, after: float = 0.0, lines: bool = True):
        self.total = max(0, total)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.done = 0
        self.start = time.monotonic()
        self.show_at = (self.start if since is None else since) + after
        self.lines = lines
        self.drawn = False
        self._lock = threading.Lock()

    def line(self, what: str) -> str:
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        return (f"[{bar}] {self.done}/{self.total} {self.unit}, {duration(elapsed)} elapsed, "
                f"ETA {'?' if eta is None else duration(eta)}  {what}")

    def _redraw(self, what: str) -> None:
        if self.tty and time.monotonic() >= self.show_at:
            self.stream.write("\r" + self.line(what)[:self.WIDTH].ljust(self.WIDTH))
            self.stream.flush()
            self.drawn = True

    def step(self, what: str = "") -> None:
        """One more step done (redraws the bar on a terminal)."""
        with self._lock:
            self.done += 1
            self._redraw(what)

    def update(self, done: int, what: str = "") -> None:
        """`done` steps done so far (redraws the bar on a terminal)."""
        with self._lock:
            self.done = done
            self._redraw(what)

    def note(self, what: str) -> None:
        """A milestone: a line of its own when not on a terminal (and `lines`)."""
        with self._lock:
            if not self.tty and self.lines:
                self.stream.write(self.line(what) + "\n")
                self.stream.flush()

    def finish(self, what: str) -> None:
        """The last line: kept on a terminal, or a plain line (when `lines`)."""
        with self._lock:
            if self.tty:
                self.stream.write("\r" + self.line(what)[:self.WIDTH].ljust(self.WIDTH) + "\n")
            elif self.lines:
                self.stream.write(self.line(what) + "\n")
            self.stream.flush()

    def clear(self) -> None:
        """Erase the bar, if it was drawn (the work is done and says so itself)."""
        with self._lock:
            if self.drawn:
                self.stream.write("\r" + " " * self.WIDTH + "\r")
                self.stream.flush()
                self.drawn = False
