"""The replay's Parquet files: schema, round trips, atomic writes."""

from __future__ import annotations

import errno
import os
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from restmcts import replay, storage
from restmcts.replay import TRACE_SCHEMA, VALUE_SCHEMA, Trace, ValueRecord


def _trace(qid: str = "q1", **kw) -> Trace:
    base = dict(question_id=qid, question="Start with 1. Add 2. What is the result?",
                steps=("1 + 2 = 3", "The answer is 3"), answer="3", correct=True, tokens=17,
                strategy="mcts_star", iteration=1)
    return Trace(**{**base, **kw})


def test_traces_round_trip_with_exact_schema(tmp_path):
    rows = [_trace(), _trace("q2", answer=None, correct=False, steps=(), chosen=True, value=0.25)]
    path = str(tmp_path / "traces.parquet")
    replay.write_records(rows, Trace, path)
    table = pq.read_table(path)
    for name in ["question_id", "question", "steps", "answer", "correct", "tokens", "strategy", "iteration"]:
        assert table.schema.field(name).type == TRACE_SCHEMA.field(name).type
    assert pa.types.is_list(table.schema.field("steps").type)
    assert table.schema.field("steps").type.value_type == pa.string()
    assert table.schema.field("tokens").type == "int64" and table.schema.field("iteration").type == "int32"
    assert pq.read_schema(path).field("chosen").type == pa.bool_()
    value = pq.read_schema(path).field("value")
    assert value.type == pa.float64() and value.nullable
    assert table.column("value").to_pylist() == [None, 0.25], "no value is a null, not NaN or 0"
    assert table.column("chosen").to_pylist() == [False, True]
    assert replay.read_traces(path) == rows


def test_values_round_trip(tmp_path):
    rows = [ValueRecord("q1", "Q", ("a",), 0.5, 2, True, 1), ValueRecord("q1", "Q", ("a", "b"), 1.0, 1, True, 1)]
    path = str(tmp_path / "values.parquet")
    replay.write_records(rows, ValueRecord, path)
    table = pq.read_table(path)
    assert table.schema.field("value").type == VALUE_SCHEMA.field("value").type == "double"
    assert table.schema.field("distance").type == "int32"
    assert replay.read_values([path, path]) == rows + rows


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB file system (tmpfs) mounted under tmp_path: writes past it fail with ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _big_trace(qid: str) -> Trace:  # ~1 MiB of incompressible text: more than the disk holds
    return _trace(qid, question=os.urandom(512 * 1024).hex())


def test_full_disk_during_a_parquet_write_keeps_the_old_file(small_disk):
    path = str(small_disk / "replay" / "traces.parquet")
    replay.write_records([_trace()], Trace, path)
    with pytest.raises(OSError) as err:
        replay.write_records([_big_trace("q2")], Trace, path)
    assert "No space left on device" in str(err.value) or getattr(err.value, "errno", None) == errno.ENOSPC
    assert [p.name for p in (small_disk / "replay").iterdir()] == ["traces.parquet"], "no half file left"
    assert replay.read_traces(path) == [_trace()]
    replay.write_records([_trace("q3")], Trace, path)  # the space of the failed write was given back
    assert replay.read_traces(path) == [_trace("q3")]


def test_full_disk_during_a_text_write_keeps_the_old_file(small_disk):
    path = small_disk / "done.json"
    storage.write_text(str(path), "old")
    with pytest.raises(OSError) as err:
        storage.write_text(str(path), os.urandom(512 * 1024).hex())
    assert "No space left on device" in str(err.value) or getattr(err.value, "errno", None) == errno.ENOSPC
    assert [p.name for p in small_disk.iterdir()] == ["done.json"] and path.read_text() == "old"


def test_missing_column_is_named(tmp_path):
    import pyarrow as pa

    path = str(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"question_id": ["q"]}), path)
    with pytest.raises(Exception, match="question"):
        replay.read_traces(path)


def test_text_helpers(tmp_path):
    path = str(tmp_path / "a" / "m.json")
    storage.write_text(path, '{"x": 1}')
    assert storage.read_text(path) == '{"x": 1}'
    assert storage.list_dir(str(tmp_path / "a")) == [path]
    storage.remove(str(tmp_path / "a"))
    assert not storage.exists(path)
    assert storage.list_dir(str(tmp_path / "a")) == []
