"""The replay's Parquet files: schema, round trips, atomic writes."""

from __future__ import annotations

import errno

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from restmcts import replay
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
    assert replay.read_traces(path) == rows


def test_values_round_trip(tmp_path):
    rows = [ValueRecord("q1", "Q", ("a",), 0.5, 2, True, 1), ValueRecord("q1", "Q", ("a", "b"), 1.0, 1, True, 1)]
    path = str(tmp_path / "values.parquet")
    replay.write_records(rows, ValueRecord, path)
    table = pq.read_table(path)
    assert table.schema.field("value").type == VALUE_SCHEMA.field("value").type == "double"
    assert table.schema.field("distance").type == "int32"
    assert replay.read_values([path, path]) == rows + rows


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    path = str(tmp_path / "sub" / "traces.parquet")

    def disk_full(table, where, **kwargs):  # half a file, then the device is full
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    with pytest.raises(OSError, match="No space"):
        replay.write_records([_trace()], Trace, path)
    assert list((tmp_path / "sub").iterdir()) == []


def test_full_disk_during_a_text_write_leaves_the_old_file(tmp_path, monkeypatch):
    from pyarrow import fs

    path = tmp_path / "done.json"
    replay.write_text(str(path), "old")

    class FullStream:
        def __init__(self, where):
            self.f = open(where, "wb")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:2])
            raise OSError(errno.ENOSPC, "No space left on device")

    class FullDisk:  # the local file system, except that writes run out of space
        def __init__(self):
            self.real = fs.LocalFileSystem()

        def __getattr__(self, name):
            return getattr(self.real, name)

        def open_output_stream(self, where):
            return FullStream(where)

    monkeypatch.setattr(replay, "_fs", lambda p: (FullDisk(), p))
    with pytest.raises(OSError, match="No space"):
        replay.write_text(str(path), "new")
    assert [p.name for p in tmp_path.iterdir()] == ["done.json"] and path.read_text() == "old"


def test_missing_column_is_named(tmp_path):
    import pyarrow as pa

    path = str(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"question_id": ["q"]}), path)
    with pytest.raises(Exception, match="question"):
        replay.read_traces(path)


def test_text_helpers(tmp_path):
    path = str(tmp_path / "a" / "m.json")
    replay.write_text(path, '{"x": 1}')
    assert replay.read_text(path) == '{"x": 1}'
    assert replay.list_dir(str(tmp_path / "a")) == [path]
    replay.remove(str(tmp_path / "a"))
    assert not replay.exists(path)
    assert replay.list_dir(str(tmp_path / "a")) == []
