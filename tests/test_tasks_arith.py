"""The synthetic arithmetic task: grammar, determinism, splits, difficulty knobs, step labels."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restmcts.config import DataConfig
from restmcts.tasks import make_task
from restmcts.tasks.arith import ArithTask, Problem, apply, parse_question, step_labels

QUESTION = re.compile(r"Start with \d+\.(?: (?:Add|Subtract|Multiply by) \d+\.)+ What is the result\?")
STEP = re.compile(r"\d+ [+\-*] \d+ = \d+")
ANSWER = re.compile(r"The answer is \d+")

SMALL = DataConfig(arith_train_size=300, arith_test_size=40)


def small_task(seed: int = 0, **knobs) -> ArithTask:
    return ArithTask(replace(SMALL, **knobs), seed)


def test_docstring_example_is_exact():
    p = Problem(7, (("+", 5), ("*", 3), ("-", 4)))
    assert p.text == "Start with 7. Add 5. Multiply by 3. Subtract 4. What is the result?"
    assert p.solution() == ["7 + 5 = 12", "12 * 3 = 36", "36 - 4 = 32", "The answer is 32"]
    assert p.answer == 32
    assert parse_question(p.text) == p


def test_questions_follow_the_grammar():
    task = small_task()
    for split in ("train", "test"):
        for p in task.problems(split):
            assert QUESTION.fullmatch(p.text)
            *steps, last = p.solution()
            assert all(STEP.fullmatch(s) for s in steps)
            assert ANSWER.fullmatch(last)
            assert parse_question(p.text) == p
            assert task.step_labels(p.text, p.solution()) == [True] * (len(p.ops) + 1)


def test_same_seed_same_questions_other_seed_different():
    a, b, c = small_task(0), small_task(0), small_task(1)
    assert a.questions("train") == b.questions("train")
    assert a.questions("test") == b.questions("test")
    assert a.questions("test") != c.questions("test")


def test_ids_sizes_and_limit():
    task = small_task()
    test = task.questions("test")
    assert len(test) == 40 and len(task.questions("train")) == 300
    assert [q.id for q in test[:3]] == ["arith-test-0", "arith-test-1", "arith-test-2"]
    assert task.questions("test", limit=5) == test[:5]
    assert test[0].answer == str(task.problems("test")[0].answer)


def test_train_and_test_do_not_overlap():
    task = small_task()
    train = {q.question for q in task.questions("train")}
    test = {q.question for q in task.questions("test")}
    assert not train & test
    assert len(test) == 40 and len(train) == 300  # no duplicates within a split either


def test_make_task_builds_arith():
    task = make_task(SMALL, seed=3)
    assert isinstance(task, ArithTask) and task.seed == 3


@settings(max_examples=25, deadline=None)
@given(min_ops=st.integers(1, 3), extra_ops=st.integers(0, 2), test_ops=st.integers(1, 5),
       operand_max=st.integers(1, 12), start_max=st.integers(5, 30), headroom=st.integers(0, 200),
       seed=st.integers(0, 1000))
def test_difficulty_knobs_bound_every_problem(min_ops, extra_ops, test_ops, operand_max, start_max,
                                              headroom, seed):
    cfg = replace(SMALL, arith_train_size=30, arith_test_size=5, arith_min_ops=min_ops,
                  arith_max_ops=min_ops + extra_ops, arith_test_ops=test_ops,
                  arith_operand_max=operand_max, arith_start_max=start_max,
                  arith_value_max=start_max + headroom)
    task = ArithTask(cfg, seed)
    for split in ("train", "test"):
        for p in task.problems(split):
            if split == "test":
                assert len(p.ops) == test_ops
            else:
                assert min_ops <= len(p.ops) <= min_ops + extra_ops
            assert 1 <= p.start <= start_max
            value = p.start
            for sym, x in p.ops:
                assert 1 <= x <= operand_max
                value = apply(value, sym, x)
                assert 0 <= value <= cfg.arith_value_max


def test_too_small_question_space_fails_instead_of_hanging():
    task = small_task(arith_test_ops=1, arith_start_max=1, arith_operand_max=1, arith_value_max=1,
                      arith_test_size=5)
    with pytest.raises(ValueError, match="data.arith_test_size"):
        task.questions("test")


# ---- step labels

PROBLEM = Problem(7, (("+", 5), ("*", 3), ("-", 4)))
QUESTION_TEXT = PROBLEM.text


def labels(steps: list[str]) -> list[bool]:
    return step_labels(PROBLEM, steps)


def test_step_labels_correct_solution():
    assert labels(PROBLEM.solution()) == [True, True, True, True]
    assert small_task().step_labels(QUESTION_TEXT, PROBLEM.solution()) == [True] * 4


def test_step_labels_wrong_step_poisons_the_rest():
    assert labels(["7 + 5 = 12", "12 * 3 = 35", "35 - 4 = 31", "The answer is 31"]) == [True, False, False, False]
    # Right result but the wrong operation, and right arithmetic on the wrong operand.
    assert labels(["7 + 5 = 12", "12 + 24 = 36"]) == [True, False]
    assert labels(["7 + 6 = 13"]) == [False]


def test_step_labels_early_answer_and_extra_steps():
    assert labels(["7 + 5 = 12", "The answer is 12"]) == [True, False]
    assert labels(PROBLEM.solution() + ["32 + 0 = 32"]) == [True, True, True, True, False]
    assert labels(["7 + 5 = 12", "12 * 3 = 36", "36 - 4 = 32", "The answer is 33"])[-1] is False
    assert labels(["7 + 5 = 12", "12 * 3 = 36", "36 - 4 = 32", "The answer is 32.5"])[-1] is False


def test_step_labels_garbage():
    assert labels(["hello", "7 + 5 = 12"]) == [False, False]
    assert labels(["", "???"]) == [False, False]
    assert labels(["7 + 5 = 12 and more"]) == [False]
    assert labels([]) == []


# ---- answers


def test_is_terminal_and_extract_answer():
    task = small_task()
    assert task.is_terminal("The answer is 32")
    assert not task.is_terminal("36 - 4 = 32")
    assert task.extract_answer(PROBLEM.solution()) == "32"
    assert task.extract_answer(["7 + 5 = 12"]) is None
    assert task.extract_answer(["The answer is 007"]) == "7"
    assert task.extract_answer(["The answer is -3"]) == "-3"
    assert task.extract_answer(["The answer is 4", "The answer is 5"]) == "5"
    assert task.extract_answer(["The answer is 32.5"]) == "32.5"
    # Text after the number leaves no answer (a checker that read the first number let such outputs
    # into ReST-EM's training data), and the true step labels call the step wrong.
    assert task.is_terminal("The answer is 3 = 8")
    assert task.extract_answer(["11 - 8 = 3", "The answer is 3 = 8"]) is None
    assert not task.check(task.extract_answer(["The answer is 3 = 8"]), "3")
    assert task.extract_answer(["The answer is 32."]) == "32"
    assert labels(["7 + 5 = 12", "12 * 3 = 36", "36 - 4 = 32", "The answer is 32 = 8"])[-1] is False
    assert labels(["7 + 5 = 12", "12 * 3 = 36", "36 - 4 = 32", "The answer is 32"])[-1] is True


def test_check():
    task = small_task()
    assert task.check("32", "32")
    assert task.check(" 32 ", "32")
    assert not task.check("31", "32")
    assert not task.check(None, "32")
    assert not task.check("32.5", "32")  # not read as 32
    assert not task.check("thirty-two", "32")
    assert task.check(task.extract_answer(PROBLEM.solution()), str(PROBLEM.answer))
