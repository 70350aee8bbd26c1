"""The run log (resume points) and the independent held-out check."""

from __future__ import annotations

from restmcts.loop.heldout import independent_accuracy
from restmcts.loop.state import RunState
from restmcts.replay import Trace


def test_run_state_records_and_resumes(tmp_path):
    out = str(tmp_path)
    state = RunState.open(out)
    assert not state.done(1, "search")
    state.record(1, "search", 1.5, accuracy=0.5)
    reopened = RunState.open(out)
    assert reopened.done(1, "search") and not reopened.done(1, "extract")
    assert reopened.get(1, "search")["accuracy"] == 0.5


def test_torn_last_line_reruns_that_phase(tmp_path):
    state = RunState.open(str(tmp_path))
    state.record(0, "evaluate", 1.0)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 1, "pha')
    reopened = RunState.open(str(tmp_path))
    assert reopened.done(0, "evaluate") and not reopened.done(1, "search")


def test_arith_gold_is_independent_of_the_task():
    from restmcts.config import DataConfig
    from restmcts.tasks.arith import ArithTask, independent_gold

    task = ArithTask(DataConfig())
    for q in task.questions("test", 50):
        assert independent_gold(q.question) == int(q.answer)
    assert independent_gold("What is 2 + 2?") is None


def test_independent_accuracy_counts_missing_as_wrong():
    q = "Start with 3. Multiply by 4. What is the result?"
    right = Trace("a", q, ("3 * 4 = 12", "The answer is 12"), "12", True, 5, "cot", 0, chosen=True)
    wrong = Trace("b", q, ("3 * 4 = 13", "The answer is 13"), "13", False, 5, "cot", 0, chosen=True)
    from restmcts.config import DataConfig
    from restmcts.tasks.arith import ArithTask, independent_final_number

    assert independent_final_number(("The answer is 7",)) == 7 and independent_final_number(("7",)) is None
    oracle = ArithTask(DataConfig()).independent_check
    assert independent_accuracy([right, wrong], ["a", "b", "c"], oracle) == 1 / 3
    assert independent_accuracy([right, wrong], ["a", "b", "c"], None) is None
    gsm = Trace("a", "Tom has 3 apples. How many?", ("The answer is 3",), "3", True, 5, "cot", 0, chosen=True)
    assert independent_accuracy([gsm], ["a"], oracle) is None
