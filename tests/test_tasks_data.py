"""GSM8K and MATH tasks on small fixture files: loading, malformed rows, answer extraction."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from restmcts.config import DataConfig
from restmcts.tasks import DataError, make_task
from restmcts.tasks.files import BadRow, load_rows, text_field
from restmcts.tasks.gsm8k import GSM8KTask, gold_answer
from restmcts.tasks.math import MathTask

FIXTURES = Path(__file__).parent / "fixtures"
GSM8K = str(FIXTURES / "gsm8k_small.jsonl")
MATH = str(FIXTURES / "math_small.jsonl")


def gsm8k_task(path: str = GSM8K, **kw) -> GSM8KTask:
    return GSM8KTask(DataConfig(task="gsm8k", train_path=path, test_path=path, **kw))


def math_task(path: str = MATH, **kw) -> MathTask:
    return MathTask(DataConfig(task="math", train_path=path, test_path=path, **kw))


def to_parquet(jsonl: str, out: Path, columns: list[str]) -> str:
    rows = [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), out)
    return str(out)


# ---- GSM8K


def test_gsm8k_questions_and_gold():
    task = gsm8k_task()
    qs = task.questions("test")
    assert [q.id for q in qs] == [f"gsm8k-test-{i}" for i in range(6)]
    assert [q.answer for q in qs] == ["27", "270", "1000", "9", "18", "17.5"]
    assert qs[0].question.startswith("Mara buys 3 packs")
    assert task.questions("train")[0].id == "gsm8k-train-0"
    assert task.questions("test", limit=2) == qs[:2]
    assert task.reports["test"].loaded == 6 and task.reports["test"].skipped == []


def test_gsm8k_ids_are_stable_across_runs_and_formats(tmp_path):
    first = gsm8k_task().questions("test")
    again = gsm8k_task().questions("test")
    parquet = gsm8k_task(to_parquet(GSM8K, tmp_path / "gsm8k.parquet", ["question", "answer"])).questions("test")
    assert first == again == parquet


def test_gsm8k_gold_answer():
    assert gold_answer("a\nb\n#### 1,200") == "1200"
    assert gold_answer("#### -3") == "-3"
    assert gold_answer("42") == "42"
    assert gold_answer("no final answer") is None
    assert gold_answer("####  ") is None


def test_gsm8k_terminal_and_extract():
    task = gsm8k_task()
    assert task.is_terminal("The answer is 27.")
    assert task.is_terminal("So she has \\boxed{27} pencils.")
    assert task.is_terminal("#### 27")
    assert not task.is_terminal("She has 36-9=27 pencils left.")
    assert task.extract_answer(["She has 27 pencils.", "The answer is 27."]) == "27"
    assert task.extract_answer(["The answer is $1,000."]) == "1000"
    assert task.extract_answer(["The answer is 17.50 dollars"]) == "17.50"
    assert task.extract_answer(["#### 270"]) == "270"
    assert task.extract_answer(["Total \\boxed{270} dollars"]) == "270"
    assert task.extract_answer(["The answer is 3", "Actually the answer is 4"]) == "4"
    assert task.extract_answer(["She has 27 pencils."]) is None
    assert task.extract_answer(["The answer is unclear"]) is None


def test_gsm8k_check():
    task = gsm8k_task()
    qs = task.questions("test")
    assert task.check("27", qs[0].answer)
    assert task.check("1,000", qs[2].answer)
    assert task.check("17.50", qs[5].answer)
    assert not task.check("28", qs[0].answer)
    assert not task.check(None, qs[0].answer)
    steps = ["There are 24/4=6 teams.", "They get 6*3=18 balls.", "The answer is 18"]
    assert task.check(task.extract_answer(steps), qs[4].answer)


# ---- MATH


def test_math_questions_and_gold():
    task = math_task()
    qs = task.questions("test")
    assert [q.id for q in qs] == [f"math-test-{i}" for i in range(6)]
    # The last balanced \boxed{} of the solution, or the answer field where there is one.
    assert [q.answer for q in qs] == ["\\frac{1}{2}", "6", "5\\sqrt{2}", "(-3, 3)", "15", "\\frac{4}{9}"]


def test_math_parquet_matches_jsonl(tmp_path):
    path = to_parquet(MATH, tmp_path / "math.parquet", ["problem", "solution", "answer"])
    assert math_task(path).questions("test") == math_task().questions("test")


def test_math_terminal_and_extract():
    task = math_task()
    assert task.is_terminal("So $x = \\boxed{6}$.")
    assert task.is_terminal("The final answer is 6")
    assert not task.is_terminal("Subtract 7 from both sides: $2x = 12$.")
    assert task.extract_answer(["Subtracting gives", "$\\boxed{\\frac{1}{2}}$."]) == "\\frac{1}{2}"
    assert task.extract_answer(["The answer is $(-3,3)$."]) == "(-3,3)"
    assert task.extract_answer(["#### 5\\sqrt{2}"]) == "5\\sqrt{2}"
    assert task.extract_answer(["\\boxed{\\frac{1}{2}"]) is None  # unbalanced
    assert task.extract_answer(["no answer yet"]) is None


def test_math_check_uses_math_verify():
    task = math_task()
    qs = {q.id: q for q in task.questions("test")}
    assert task.check("0.5", qs["math-test-0"].answer)  # gold \frac{1}{2}
    assert task.check("\\frac{1}{2}", "0.5")
    assert task.check("\\sqrt{50}", qs["math-test-2"].answer)
    assert task.check("(-3,3)", qs["math-test-3"].answer)
    assert task.check("\\dfrac{4}{9}", qs["math-test-5"].answer)
    assert not task.check("\\frac{2}{3}", qs["math-test-5"].answer)
    assert not task.check(None, "1")


def test_make_task_builds_data_tasks():
    assert isinstance(make_task(DataConfig(task="gsm8k", test_path=GSM8K)), GSM8KTask)
    assert isinstance(make_task(DataConfig(task="math", test_path=MATH)), MathTask)


# ---- malformed rows


def test_gsm8k_malformed_rows_are_counted_and_skipped():
    path = str(FIXTURES / "gsm8k_bad.jsonl")
    task = gsm8k_task(path)
    qs = task.questions("test")
    assert [q.id for q in qs] == ["gsm8k-test-0", "gsm8k-test-8"]  # ids keep their file position
    report = task.reports["test"]
    assert (report.rows, report.loaded, len(report.skipped)) == (8, 2, 6)  # the blank line is no row
    reasons = dict(entry.removeprefix(path + ":").split(": ", 1) for entry in report.skipped)
    assert set(reasons) == {"2", "3", "4", "5", "6", "8"}
    assert "bad JSON" in reasons["2"]
    assert reasons["3"] == "answer: missing"
    assert "####" in reasons["4"]
    assert reasons["5"] == "question: expected text, got int"
    assert reasons["6"] == "question: empty"
    assert "JSON object" in reasons["8"]
    assert "skipped 6" in report.summary()


def test_math_malformed_rows_are_counted_and_skipped():
    path = str(FIXTURES / "math_bad.jsonl")
    task = math_task(path)
    assert [q.answer for q in task.questions("test")] == ["6", "15"]
    skipped = task.reports["test"].skipped
    assert [s.split(": ", 1)[0] for s in skipped] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "solution: no \\boxed" in skipped[0]
    assert "problem: expected text, got list" in skipped[1]
    assert "problem or question: missing" in skipped[2]
    assert "solution: no \\boxed" in skipped[3]


def test_bad_row_error_mode_names_file_line_and_field(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n" + json.dumps({"question": "q2"}) + "\n")
    with pytest.raises(DataError, match=r"two\.jsonl:2: answer: missing"):
        gsm8k_task(str(path), on_bad_row="error").questions("test")
    with pytest.raises(DataError, match=r"gsm8k_bad\.jsonl:2: line: bad JSON"):
        gsm8k_task(str(FIXTURES / "gsm8k_bad.jsonl"), on_bad_row="error").questions("test")


def test_parquet_null_and_wrong_types(tmp_path):
    table = pa.table({"problem": ["a", None, "c"], "solution": ["\\boxed{1}", "\\boxed{2}", "none"],
                      "answer": [None, None, None]}, schema=pa.schema([("problem", pa.string()),
                                                                       ("solution", pa.string()),
                                                                       ("answer", pa.string())]))
    path = tmp_path / "m.parquet"
    pq.write_table(table, path)
    task = math_task(str(path))
    assert [(q.id, q.answer) for q in task.questions("test")] == [("math-test-0", "1")]
    assert [s.removeprefix(str(path)) for s in task.reports["test"].skipped] == [
        ":2: problem or question: missing", ":3: solution: no \\boxed{...} answer, and no answer field"]


def test_text_field_rules():
    assert text_field({"question": " q "}, ["question"]) == "q"
    assert text_field({"problem": "p"}, ["question", "problem"]) == "p"
    assert text_field({"answer": 12}, ["answer"], numbers=True) == "12"
    with pytest.raises(BadRow, match="answer: expected text, got int"):
        text_field({"answer": 12}, ["answer"])
    with pytest.raises(BadRow, match="answer: expected text or a number, got bool"):
        text_field({"answer": True}, ["answer"], numbers=True)


# ---- missing files and hub names


def test_missing_file_names_the_config_key(tmp_path):
    with pytest.raises(DataError, match=r"data\.test_path='.*nope\.jsonl': no such file"):
        gsm8k_task(str(tmp_path / "nope.jsonl")).questions("test")
    with pytest.raises(DataError, match=r"data\.train_path is empty"):
        GSM8KTask(DataConfig(task="gsm8k", test_path=GSM8K)).questions("train")
    with pytest.raises(DataError, match=r"data\.test_path=.*is not a file"):
        gsm8k_task(str(tmp_path)).questions("test")
    odd = tmp_path / "rows.csv"
    odd.write_text("question,answer\n")
    with pytest.raises(DataError, match="unknown file type '.csv'"):
        gsm8k_task(str(odd)).questions("test")


def test_hub_name_without_hub_fails_clearly():
    # No hub is reachable here: either `datasets` is missing or the download fails.
    with pytest.raises(DataError, match=r"data\.train_path='openai/gsm8k:main': no such local file"):
        GSM8KTask(DataConfig(task="gsm8k", train_path="openai/gsm8k:main")).questions("train")


def test_load_rows_directly():
    rows, report = load_rows(GSM8K, key="data.test_path", split="test",
                             convert=lambda r: len(r["question"]), on_bad_row="skip")
    assert [i for i, _ in rows] == list(range(6)) and report.source == GSM8K


def test_blank_lines_and_limit_zero_mean_all(tmp_path):
    path = tmp_path / "gaps.jsonl"
    row = json.dumps({"question": "q", "answer": "#### 2"})
    path.write_text(f"\n{row}\n\n{row}\n\n")
    task = gsm8k_task(str(path))
    assert [q.id for q in task.questions("test", limit=0)] == ["gsm8k-test-1", "gsm8k-test-3"]
    assert task.reports["test"].skipped == []

