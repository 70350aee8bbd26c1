"""Answer text helpers and the process-pool answer checker (threads, timeouts, dead workers)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from restmcts.tasks.checking import (
    AnswerChecker,
    check_answer,
    check_answers,
    checker_stats,
    fast_check,
    first_number,
    last_boxed,
    stated_answer,
    states_answer,
    verify_answer,
)


def hostile_compare(pred: str, gold: str) -> bool:
    """Runs in the checker process: "hang" never finishes, "die" kills the process."""
    if pred == "hang":
        time.sleep(600)
    if pred == "die":
        os._exit(3)
    return verify_answer(pred, gold)


@pytest.fixture
def hostile():
    checker = AnswerChecker(max_workers=1, compare=hostile_compare)
    yield checker
    checker.close()


# ---- answer text


def test_last_boxed_balances_braces():
    assert last_boxed("so $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{1} then \\boxed{ {2} }") == "{2}"
    assert last_boxed("\\boxed{\\frac{1}{2}") is None
    assert last_boxed("\\fbox{7}") == "7"
    assert last_boxed("so $x^2 + y^2 = \\boxed 9$.") == "9"
    assert last_boxed("no box") is None


def test_stated_answer():
    assert stated_answer("The answer is $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert stated_answer("the final answer is: 12") == "12"
    assert stated_answer("The answer is \\boxed{3}, i.e. three") == "3"
    assert stated_answer("#### 1,000") == "1,000"
    assert stated_answer("The answer is .") is None
    assert stated_answer("\\boxed{}") is None
    assert not states_answer("7 + 5 = 12") and states_answer("#### 3")


def test_first_number():
    assert first_number("$1,200.") == "1200"
    assert first_number("-3 apples") == "-3"
    assert first_number("about 2.50 each") == "2.50"
    assert first_number("none") is None


@pytest.mark.parametrize(("pred", "gold", "verdict"), [
    ("72", "72", True), ("72", "73", False), ("1,000", "1000", True), ("$18", "18", True),
    ("18.0", "18", True), ("-4", "-4", True), ("0.5", "0.50001", None), ("\\frac{1}{2}", "0.5", None),
    ("18 dollars", "18", None),
])
def test_fast_check(pred, gold, verdict):
    assert fast_check(pred, gold) is verdict


# ---- the shared checker (real checker processes)


def test_check_answer_with_math_verify():
    assert check_answer("\\frac{1}{2}", "0.5")
    assert check_answer("0.5", "\\frac{1}{2}")
    assert check_answer("3\\sqrt{2}", "\\sqrt{18}")
    assert check_answer("\\dfrac{14}{3}", "14/3")
    assert not check_answer("\\frac{1}{3}", "\\frac{1}{2}")
    assert not check_answer(None, "1")
    assert not check_answer("", "1")
    assert check_answers([("\\frac{1}{2}", "0.5"), ("2", "3"), (None, "1")]) == [True, False, False]


def test_check_answer_off_the_main_thread():
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(check_answer("\\frac{1}{2}", "0.5")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [True, True, True]
    assert checker_stats().failures == 0


def test_hanging_check_times_out_and_the_pool_recovers(hostile):
    assert hostile.check("\\frac{1}{2}", "0.5", timeout_s=30)  # starts the one checker process
    [first] = [w.process for w in hostile._idle]
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(hostile.check("hang", "1/2", timeout_s=0.5)))
    thread.start()
    thread.join(timeout=120)  # the hang lasts 600 s: returning at all means it was cut
    assert not thread.is_alive(), "the caller hangs with its check"
    assert results == [False]
    assert first.returncode == -signal.SIGKILL, "the hung checker process was killed"
    assert hostile.stats().timeouts == 1
    # The hung process was replaced: the next check gets a fresh one and a real verdict.
    assert hostile.check("\\frac{1}{2}", "0.5", timeout_s=30)
    assert hostile.stats().timeouts == 1 and hostile.stats().failures == 0


def test_dead_checker_process_is_replaced(hostile):
    assert hostile.check("die", "1/2", timeout_s=30) is False
    assert hostile.stats().failures == 1
    assert hostile.check("1/2", "0.5", timeout_s=30)


def test_compare_must_be_importable():
    with pytest.raises(ValueError, match="module-level"):
        AnswerChecker(compare=lambda p, g: True)
