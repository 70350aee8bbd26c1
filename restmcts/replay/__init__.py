"""The replay: typed records and their Parquet files.

    traces.parquet  one row per terminal solution (policy data: the verified-correct rows)
    values.parquet  one row per inferred (Q, p, v) sample (PRM data)

Every row carries `question_id`; files are written whole and atomically (restmcts.storage), so a
reader never sees half a file and a killed writer leaves nothing behind. Paths may be local or
any URI pyarrow's filesystems understand (s3://, gs://, ...). How a tree becomes rows: extract.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from restmcts.storage import filesystem, write_table

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Trace:
    """One terminal solution found by a strategy."""

    question_id: str
    question: str
    steps: tuple[str, ...]  # reasoning steps from the root, final answer step last
    answer: str | None  # the answer the solution states (None: it states none)
    correct: bool  # answer checked against the gold answer
    tokens: int  # policy tokens the strategy spent on this whole question (same on each of its rows)
    strategy: str  # mcts_star | cot | sc | bon | tot | rest_em ...
    iteration: int
    chosen: bool = False  # the solution the strategy answers with (one per question at most)
    value: float | None = None  # the PRM's value of the solution, where the strategy computed one


@dataclass(frozen=True)
class ValueRecord:
    """One PRM training sample (Q, p, v) inferred from a finished tree (ALGORITHM.md)."""

    question_id: str
    question: str
    steps: tuple[str, ...]  # the partial solution p
    value: float  # inferred v in [0, 1]
    distance: int  # reasoning distance m
    on_correct_path: bool
    iteration: int


TRACE_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("question", pa.string()),
        ("steps", pa.list_(pa.string())),
        ("answer", pa.string()),
        ("correct", pa.bool_()),
        ("tokens", pa.int64()),
        ("strategy", pa.string()),
        ("iteration", pa.int32()),
        ("chosen", pa.bool_()),
        ("value", pa.float64()),
    ],
    metadata={"restmcts_schema": str(SCHEMA_VERSION)},
)

VALUE_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("question", pa.string()),
        ("steps", pa.list_(pa.string())),
        ("value", pa.float64()),
        ("distance", pa.int32()),
        ("on_correct_path", pa.bool_()),
        ("iteration", pa.int32()),
    ],
    metadata={"restmcts_schema": str(SCHEMA_VERSION)},
)

R = TypeVar("R", Trace, ValueRecord)
_SCHEMAS = {Trace: TRACE_SCHEMA, ValueRecord: VALUE_SCHEMA}


def to_table(records: Sequence[R], cls: type[R]) -> pa.Table:
    schema = _SCHEMAS[cls]
    columns = {f.name: [getattr(r, f.name) for r in records] for f in dataclasses.fields(cls)}
    columns["steps"] = [list(s) for s in columns["steps"]]
    return pa.Table.from_pydict(columns, schema=schema)


def from_table(table: pa.Table, cls: type[R]) -> list[R]:
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise ValueError(f"replay table lacks columns {missing}; expected {names}")
    cols = {n: table.column(n).to_pylist() for n in names}
    cols["steps"] = [tuple(s) for s in cols["steps"]]
    return [cls(**{n: cols[n][i] for n in names}) for i in range(table.num_rows)]


def write_records(records: Sequence[R], cls: type[R], path: str) -> None:
    write_table(to_table(records, cls), path)


def read_table(paths: str | Iterable[str], schema: pa.Schema) -> pa.Table:
    """Read and concatenate replay files, cast to the schema (extra columns are kept out)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    tables = []
    for path in paths:
        fs, p = filesystem(path)
        t = pq.read_table(p, filesystem=fs)
        tables.append(t.select(schema.names).cast(schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def read_traces(paths: str | Iterable[str]) -> list[Trace]:
    return from_table(read_table(paths, TRACE_SCHEMA), Trace)


def read_values(paths: str | Iterable[str]) -> list[ValueRecord]:
    return from_table(read_table(paths, VALUE_SCHEMA), ValueRecord)
