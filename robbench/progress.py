"""Progress of a run as plain lines, for wherever no progress bar can be drawn (a pipe, a log, a notebook's stderr).

``LineProgress`` is a ``ProgressFactory`` (see ``robbench.evaluation``): each stage prints a line when it
starts, then one every tenth of its examples or every ``every_s`` seconds, whichever comes first, with
the elapsed time and an ETA, and one when it ends. ``say`` prints a line of its own (what is about to
run). The command line uses it when stderr is not a terminal; ``robbench.evaluate`` and
``robbench.benchmark`` use it unless given another factory, so a run is never silent for minutes.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

STEPS = 10  # a line every tenth of a stage's examples ...
EVERY_S = 30.0  # ... or every 30 seconds, whichever comes first


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LineProgress:
    def __init__(self, stream: TextIO | None = None, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic):
        self._stream, self._every_s, self._clock = stream, every_s, clock

    def say(self, text: str) -> None:
        print(f"robbench: {text}", file=self._stream or sys.stderr, flush=True)

    def __call__(self, description: str, total: int) -> Callable[[float], None]:
        started = self._clock()
        done, shown = [0.0], [started, -1]  # examples done; when and at which tenth the last line was printed
        self.say(f"{description}: {total:,} examples")

        def advance(n: float) -> None:
            if done[0] >= total:  # the end was said
                return
            done[0] += n
            now, tenth = self._clock(), int(STEPS * done[0] / total) if total else STEPS
            finished = done[0] >= total
            if finished or tenth > shown[1] and tenth > 0 or now - shown[0] >= self._every_s:
                elapsed = now - started
                if finished:
                    self.say(f"{description}: done, {total:,} examples in {duration(elapsed)}")
                else:
                    eta = elapsed * (total - done[0]) / done[0] if done[0] else float("nan")
                    eta_text = duration(eta) if done[0] else "unknown"
                    self.say(f"{description}: {int(done[0]):,}/{total:,} ({100 * done[0] / total:.0f} %), "
                             f"{duration(elapsed)} elapsed, eta {eta_text}")
                shown[0], shown[1] = now, tenth

        return advance
