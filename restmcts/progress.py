"""Progress of long jobs: a tqdm bar on a terminal, complete throttled lines in logs.

    with progress(total=len(rows), desc="bootstrap sft", unit="step") as bar:
        for row in rows:
            ...
            bar.update(1, loss=f"{loss:.3f}")
    # or absolute: bar.set(done, in_flight=12, tok_s="1,234")

Where the stream (stderr by default) is a terminal, the bar is tqdm's, with its rate and ETA.
Anywhere else (a log file, `ray job logs`, a Ray actor's output) each update that comes at
least `RESTMCTS_PROGRESS_INTERVAL` seconds (default 5) after the last printed one writes one
complete line, never a carriage return:

    [bootstrap sft] 400/1600 steps (25%) | 3.1 steps/s | ETA 6m27s | loss 0.412

plus a first line when the work starts and a final line when it ends (`close`, or leaving the
`with` block), so a log shows the work from its first seconds to its end.

Libraries' own bars (transformers loading and saving weights) write carriage returns even into
a log; where stderr is not a terminal, importing this module turns them off
(HF_HUB_DISABLE_PROGRESS_BARS, inherited by the Ray actors a job starts afterwards).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

INTERVAL_ENV = "RESTMCTS_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 5.0


def _is_tty(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def quiet_library_bars() -> None:
    """Turn transformers' / huggingface_hub's progress bars off when stderr is not a terminal."""
    if _is_tty(sys.stderr):
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already: its switch was read at import
        sys.modules["transformers"].utils.logging.disable_progress_bar()


quiet_library_bars()


def line_interval() -> float:
    """Seconds between two progress lines, from RESTMCTS_PROGRESS_INTERVAL (default 5)."""
    raw = os.environ.get(INTERVAL_ENV, "")
    if not raw.strip():
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ValueError(f"{INTERVAL_ENV}: expected a number of seconds >= 0; got {raw!r}")
    return value


def format_duration(seconds: float) -> str:
    """1h02m, 6m27s, 42s."""
    s = max(0, int(seconds + 0.5))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _fields(postfix: dict[str, Any]) -> str:
    return " | ".join(f"{k.replace('_', ' ')} {v}" for k, v in postfix.items())


class Progress:
    """One unit of long work: `total` things (or None when unknown), `initial` already done."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", initial: int = 0,
                 stream: IO[str] | None = None, tty: bool | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.initial = initial
        self.postfix: dict[str, Any] = {}
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start = clock()
        self.closed = False
        is_tty = tty if tty is not None else _is_tty(self.stream)
        self._bar: Any = None
        if is_tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=self.stream,
                             dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
        else:
            self.interval = line_interval() if interval is None else interval
            self._last = self.start
            self._write(self._line())  # the work has started: say so at once

    # ---- updates

    def update(self, n: int = 1, **postfix: Any) -> None:
        """`n` more done; keyword fields replace what the line or bar shows after the rate."""
        self.set(self.n + n, **postfix)

    def set(self, done: int | None = None, **postfix: Any) -> None:
        """`done` in total so far (None: unchanged); keyword fields as in `update`."""
        if self.closed:
            return
        if postfix:
            self.postfix.update(postfix)
        previous, self.n = self.n, self.n if done is None else done
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(_fields(self.postfix), refresh=False)
            self._bar.update(self.n - previous)
            return
        now = self.clock()
        if now - self._last >= self.interval and self.n != self.total:  # the end has its own line
            self._last = now
            self._write(self._line())

    def close(self, **postfix: Any) -> None:
        """End the work: the bar closes, or one final line with the elapsed time."""
        if self.closed:
            return
        if postfix:
            self.postfix.update(postfix)
        self.closed = True
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(_fields(self.postfix), refresh=False)
            self._bar.close()
            return
        self._write(self._line(final=True))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the line

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    @property
    def rate(self) -> float:
        """Things per second since the start (those already done at the start left out)."""
        return (self.n - self.initial) / max(self.elapsed, 1e-9)

    def _line(self, final: bool = False) -> str:
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        parts = [f"[{self.desc}] {count} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        elapsed = self.elapsed
        if final:
            parts.append(f"done in {format_duration(elapsed)}")
        if self.n > self.initial and elapsed > 0:
            parts.append(f"{self.rate:.3g} {self.unit}/s")
            if not final and self.total is not None and self.n < self.total:
                parts.append(f"ETA {format_duration((self.total - self.n) / self.rate)}")
        if self.postfix:
            parts.append(_fields(self.postfix))
        return " | ".join(parts)

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def progress(total: int | None, desc: str, unit: str = "it", initial: int = 0, **kwargs: Any) -> Progress:
    """A Progress on stderr (see the module docstring)."""
    return Progress(total, desc, unit, initial, **kwargs)
