"""Synthetic multi-step arithmetic: the embedded default task.

Grammar (other code relies on it exactly):

    question: Start with 7. Add 5. Multiply by 3. Subtract 4. What is the result?
    steps:    7 + 5 = 12
              12 * 3 = 36
              36 - 4 = 32
              The answer is 32

Difficulty is the number of operations and the operand range. Values stay in
[0, arith_value_max]: Subtract is drawn only when it keeps the value non-negative and
Multiply only when it keeps it at or below the cap. The test split is drawn first and the
train split never repeats a test question. `step_labels` is the ground-truth per-step
checker used to measure PRM quality.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from restmcts.config import DataConfig
from restmcts.tasks.base import Question, Split

OPS = {"Add": "+", "Subtract": "-", "Multiply by": "*"}
_ANSWER = re.compile(r"The answer is\s*-?\d")  # a step that states an answer (it ends a solution)
# What the answer is: the whole numeric token, so that "The answer is 32.5" does not read as 32, and
# only when the number ends the step: "The answer is 3 = 8" states none.
_ANSWER_STEP = re.compile(r"^\s*The answer is\s*(-?\d+(?:[.,/]\d+)*)\s*\.?\s*$")
_STEP = re.compile(r"^\s*(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")
_OP_TEXT = re.compile(r"(Add|Subtract|Multiply by) (\d+)\.")
_START = re.compile(r"Start with (\d+)\.")


@dataclass(frozen=True)
class Problem:
    start: int
    ops: tuple[tuple[str, int], ...]  # (symbol, operand)

    @property
    def text(self) -> str:
        names = {v: k for k, v in OPS.items()}
        parts = [f"Start with {self.start}."] + [f"{names[s]} {x}." for s, x in self.ops]
        return " ".join(parts + ["What is the result?"])

    def solution(self) -> list[str]:
        value, steps = self.start, []
        for sym, x in self.ops:
            new = apply(value, sym, x)
            steps.append(f"{value} {sym} {x} = {new}")
            value = new
        return steps + [f"The answer is {value}"]

    @property
    def answer(self) -> int:
        value = self.start
        for sym, x in self.ops:
            value = apply(value, sym, x)
        return value


def _int(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def apply(value: int, sym: str, x: int) -> int:
    return value + x if sym == "+" else value - x if sym == "-" else value * x


def parse_question(text: str) -> Problem:
    """Read a question back into its operations (raises ValueError when it is not arith)."""
    start = _START.search(text)
    if start is None:
        raise ValueError(f"not an arith question: {text!r}")
    ops = tuple((OPS[name], int(x)) for name, x in _OP_TEXT.findall(text))
    return Problem(int(start.group(1)), ops)


def generate(rng: random.Random, num_ops: int, cfg: DataConfig) -> Problem:
    start = value = rng.randint(1, cfg.arith_start_max)
    ops = []
    for _ in range(num_ops):
        choices = []
        if value < cfg.arith_value_max:
            choices.append("+")
        if value >= 1:
            choices.append("-")
        if value * 2 <= cfg.arith_value_max and cfg.arith_operand_max >= 2:
            choices.append("*")
        sym = rng.choice(choices)
        if sym == "+":
            x = rng.randint(1, min(cfg.arith_operand_max, max(1, cfg.arith_value_max - value)))
        elif sym == "-":
            x = rng.randint(1, min(cfg.arith_operand_max, value))
        else:
            x = rng.randint(2, max(2, min(cfg.arith_operand_max, cfg.arith_value_max // max(value, 1))))
        ops.append((sym, x))
        value = apply(value, sym, x)
    return Problem(start, tuple(ops))


class ArithTask:
    """Seeded synthetic arithmetic; the same config and seed always give the same questions."""

    name = "arith"

    def __init__(self, cfg: DataConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = seed
        self._splits: dict[str, list[Problem]] | None = None

    def _build(self) -> dict[str, list[Problem]]:
        cfg = self.cfg
        rng = random.Random(f"arith-{self.seed}")
        test: list[Problem] = []
        seen: set[str] = set()
        attempts = 0
        while len(test) < cfg.arith_test_size:
            attempts += 1
            if attempts > 50 * cfg.arith_test_size:
                raise ValueError(f"data.arith_test_size: found only {len(test)} distinct questions with "
                                 f"{cfg.arith_test_ops} operations; lower arith_test_size or raise "
                                 f"arith_operand_max / arith_start_max / arith_test_ops")
            p = generate(rng, cfg.arith_test_ops, cfg)
            if p.text not in seen:
                seen.add(p.text)
                test.append(p)
        train: list[Problem] = []
        attempts = 0
        while len(train) < cfg.arith_train_size and attempts < 50 * cfg.arith_train_size:
            attempts += 1
            p = generate(rng, rng.randint(cfg.arith_min_ops, cfg.arith_max_ops), cfg)
            if p.text not in seen:
                seen.add(p.text)
                train.append(p)
        return {"train": train, "test": test}

    def problems(self, split: Split) -> list[Problem]:
        if self._splits is None:
            self._splits = self._build()
        return self._splits[split]

    def questions(self, split: Split, limit: int = 0) -> list[Question]:
        problems = self.problems(split)
        if limit > 0:
            problems = problems[:limit]
        return [Question(f"arith-{split}-{i}", p.text, str(p.answer)) for i, p in enumerate(problems)]

    def held_out(self, num_ops: int | None, size: int, exclude: Collection[str] = ()) -> list[Question]:
        """`size` held-out questions with `num_ops` operations (None: the test split's), for
        evaluation at a chosen difficulty.

        The test split comes first when it has `num_ops` operations (same ids as `questions("test")`);
        the rest are drawn from their own seeded stream (so the train and test splits stay as they
        are) and repeat no train or test question, nor any text in `exclude`."""
        cfg = self.cfg
        num_ops = cfg.arith_test_ops if num_ops is None else num_ops
        test = self.problems("test")
        out = [Question(f"arith-test-{i}", p.text, str(p.answer))
               for i, p in enumerate(test[:size] if num_ops == cfg.arith_test_ops else [])]
        seen = {p.text for p in self.problems("train")} | {p.text for p in test} | set(exclude)
        rng = random.Random(f"arith-{self.seed}-heldout-{num_ops}")
        attempts = 0
        while len(out) < size:
            attempts += 1
            if attempts > 50 * size:
                raise ValueError(f"eval.num_test: found only {len(out)} distinct {num_ops}-operation questions "
                                 "outside the train and test splits; lower eval.num_test or raise "
                                 "data.arith_operand_max / arith_start_max")
            p = generate(rng, num_ops, cfg)
            if p.text not in seen:
                seen.add(p.text)
                out.append(Question(f"arith-ops{num_ops}-{len(out)}", p.text, str(p.answer)))
        return out

    # ---- answers

    def is_terminal(self, step: str) -> bool:
        return states_answer(step)

    def ends(self, steps: Sequence[str]) -> bool:
        return bool(steps) and states_answer(steps[-1])

    def extract_answer(self, steps: Sequence[str]) -> str | None:
        return extract_answer(steps)

    def unmarked_answer(self, step: str) -> str | None:
        return None  # the grammar always ends with "The answer is N"

    def check(self, answer: str | None, gold: str) -> bool:
        return check_answer(answer, gold)

    # ---- ground truth per step

    def step_labels(self, question: str, steps: Sequence[str]) -> list[bool]:
        """True for each step that is right given a right prefix; once wrong, wrong after."""
        return step_labels(parse_question(question), steps)

    def independent_check(self, question: str, steps: Sequence[str]) -> bool | None:
        """The held-out oracle (restmcts/loop/heldout.py): shares no code with `check`."""
        gold = independent_gold(question)
        return None if gold is None else independent_final_number(steps) == gold


def states_answer(step: str) -> bool:
    """The step says "The answer is ..." (it ends a solution)."""
    return _ANSWER.search(step) is not None


def extract_answer(steps: Sequence[str]) -> str | None:
    """The number of the last step that states an answer, or None when that step is not exactly
    "The answer is N" (the model wrote something after the number) or no step states one."""
    for step in reversed(steps):
        if states_answer(step):
            m = _ANSWER_STEP.match(step)
            if m is None:
                return None
            value = _int(m.group(1))
            return m.group(1) if value is None else str(value)
    return None


def check_answer(answer: str | None, gold: str) -> bool:
    """The extracted answer is the gold integer."""
    if answer is None:
        return False
    try:
        return int(answer.strip()) == int(gold.strip())
    except ValueError:
        return False


def step_labels(problem: Problem, steps: Sequence[str]) -> list[bool]:
    labels: list[bool] = []
    value, ok = problem.start, True
    for k, step in enumerate(steps):
        if ok:
            ok = _step_ok(problem, k, value, step)
            if ok and k < len(problem.ops):
                value = apply(value, *problem.ops[k])
        labels.append(ok)
    return labels


def _step_ok(problem: Problem, k: int, value: int, step: str) -> bool:
    if k == len(problem.ops):
        m = _ANSWER_STEP.match(step)
        return m is not None and _int(m.group(1)) == value
    if k > len(problem.ops):
        return False
    m = _STEP.match(step)
    if m is None:
        return False
    a, sym, x, result = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    want_sym, want_x = problem.ops[k]
    return a == value and sym == want_sym and x == want_x and result == apply(value, sym, x)


# ---- an independent oracle: recomputes answers from the words, sharing no code with the above

_WORD_OPS = {"Add": lambda a, b: a + b, "Subtract": lambda a, b: a - b, "Multiply": lambda a, b: a * b}


def independent_gold(question: str) -> int | None:
    sentences = [s.strip() for s in question.split(".") if s.strip()]
    if not sentences or not sentences[0].startswith("Start with "):
        return None
    value = int(sentences[0].split()[-1])
    for sentence in sentences[1:]:
        words = sentence.split()
        if words[0] in _WORD_OPS and words[-1].isdigit():
            value = _WORD_OPS[words[0]](value, int(words[-1]))
    return value


def independent_final_number(steps: Sequence[str]) -> int | None:
    if not steps or not steps[-1].startswith("The answer is"):
        return None
    numbers = re.findall(r"-?\d+", steps[-1])
    return int(numbers[-1]) if numbers else None


# --------------------------------------------------------------------------- error analysis


def error_kinds(wrong: Sequence[tuple[Problem, Sequence[str]]]) -> dict[str, int]:
    """Count wrong solutions by their first wrong step: an arithmetic slip (`result`), a wrongly
    copied value or operation (`operand`), an unparseable step (`format`), a wrong final answer
    line (`answer`), or a solution that ends early or runs on (`length`)."""
    counts: dict[str, int] = {}
    for p, steps in wrong:
        kind = _first_error_kind(p, steps)
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def _first_error_kind(p: Problem, steps: Sequence[str]) -> str:
    labels = step_labels(p, steps)
    if all(labels):
        return "length"
    k = labels.index(False)
    if k >= len(p.ops):
        return "answer" if k == len(p.ops) else "length"
    m = _STEP.match(steps[k])
    if m is None:
        return "answer" if states_answer(steps[k]) else "format"
    value = p.start
    for sym, x in p.ops[:k]:
        value = apply(value, sym, x)
    same_inputs = (int(m.group(1)), m.group(2), int(m.group(3))) == (value, *p.ops[k])
    return "result" if same_inputs else "operand"
