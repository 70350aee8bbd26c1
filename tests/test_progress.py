"""Progress output: complete, throttled lines in logs; tqdm's bar on a terminal."""

from __future__ import annotations

import io

import pytest

from restmcts.progress import Progress, line_interval


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_are_complete_throttled_and_end_with_a_final_line():
    out, clock = io.StringIO(), Clock()
    bar = Progress(10, "bootstrap sft", unit="steps", stream=out, interval=5.0, clock=clock)
    assert out.getvalue() == "[bootstrap sft] 0/10 steps (0%)\n", "a first line as soon as the work starts"
    for _ in range(4):  # four updates within the interval: nothing printed
        clock.now += 1.0
        bar.update(1, loss="0.5")
    assert out.getvalue().count("\n") == 1
    clock.now += 1.5  # 5.5 s after the first line
    bar.update(1, loss="0.25")
    clock.now += 1.0
    bar.update(5)
    bar.close()
    bar.close()  # closing twice prints nothing more
    text = out.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 3, lines
    assert lines[1].startswith("[bootstrap sft] 5/10 steps (50%) | ") and "steps/s" in lines[1]
    assert "ETA " in lines[1] and lines[1].endswith("loss 0.25")
    assert lines[2].startswith("[bootstrap sft] 10/10 steps (100%) | done in 7s | ") and "ETA" not in lines[2]


def test_every_update_prints_with_interval_zero(monkeypatch):
    monkeypatch.setenv("RESTMCTS_PROGRESS_INTERVAL", "0")
    out, clock = io.StringIO(), Clock()
    with Progress(3, "search 1", unit="questions", initial=1, stream=out, clock=clock) as bar:
        for _ in range(2):
            clock.now += 0.5
            bar.update(1, trees_in_flight=4)
    lines = out.getvalue().splitlines()
    assert [line.split(" |")[0] for line in lines] == [  # the end is said once, by the final line
        "[search 1] 1/3 questions (33%)", "[search 1] 2/3 questions (67%)", "[search 1] 3/3 questions (100%)"]
    assert "done in 1s" in lines[-1]
    assert lines[1].endswith("trees in flight 4") and "2 questions/s" in lines[1], "resumed work is not in the rate"


def test_bad_interval_names_the_variable(monkeypatch):
    monkeypatch.setenv("RESTMCTS_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ValueError, match="RESTMCTS_PROGRESS_INTERVAL"):
        line_interval()


def test_a_terminal_gets_tqdm_with_rate_and_eta():
    out = Terminal()
    with Progress(4, "prm learner", unit="steps", stream=out) as bar:
        for _ in range(4):
            bar.update(1, loss="0.1")
    text = out.getvalue()
    assert "\r" in text and "prm learner" in text and "4/4" in text
    assert "steps/s" in text or "s/steps" in text
    assert "loss 0.1" in text
