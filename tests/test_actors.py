"""The actor system on local Ray: servers batch across trees, workers stream, the replay is exact."""

from __future__ import annotations

import asyncio
import json

import pyarrow.parquet as pq
import pytest
from killing import finish, kill_job, start_job, wait_for  # tests/ is on sys.path
from rows import assert_same_rows

from restmcts import replay
from restmcts.config import load_config


def _cfg(ckpt, *overrides):
    return load_config("configs/arith-tiny.yaml", [
        f"model.policy={ckpt}/policy", f"model.prm={ckpt}/prm",
        "search.num_simulations=4", "search.max_depth=2", "search.max_step_tokens=8",
        "search.num_workers=2", "search.trees_per_worker=8", "data.arith_min_ops=1", "data.arith_max_ops=2",
        *overrides,
    ])


@pytest.fixture(scope="module")
def servers(ray_local, tiny_ckpt):
    from restmcts.actors.servers import start_servers

    cfg = _cfg(tiny_ckpt)
    s = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    yield s
    s.shutdown()


def test_policy_server_batches_concurrent_trees(servers, tiny_ckpt):
    """64 concurrent proposals from one client land in few, large engine batches."""
    from restmcts.actors.client import ModelClient
    from restmcts.prompt import PromptFormat

    cfg = _cfg(tiny_ckpt)
    client = ModelClient(servers.policy, servers.prm, PromptFormat(), cfg.search)
    before = servers.stats()["policy"][0]

    async def many():
        return await asyncio.gather(*(client.propose(f"Start with {i}. Add 1. What is the result?", [], 2, i)
                                      for i in range(64)))

    out = asyncio.run(many())
    after = servers.stats()["policy"][0]
    assert all(len(samples) == 2 and all(isinstance(t, str) and n >= 1 for t, n in samples) for samples in out)
    batches = after.batches - before.batches
    rows = after.rows - before.rows
    assert rows == 128
    assert rows / batches > 16, f"mean policy batch {rows / batches:.1f} rows"


def test_prm_server_scores_equal_the_checkpoints_sigmoid(servers, tiny_ckpt):
    import torch

    from restmcts.actors.client import ModelClient
    from restmcts.checkpoints import load_prm, load_tokenizer
    from restmcts.prompt import PromptFormat

    question = "Start with 2. Add 3. What is the result?"
    client = ModelClient(servers.policy, servers.prm, PromptFormat(), _cfg(tiny_ckpt).search)
    values = asyncio.run(client.score(question, [[], ["2 + 3 = 5"]]))
    model, tok = load_prm(str(tiny_ckpt / "prm")), load_tokenizer(str(tiny_ckpt / "prm"))
    with torch.no_grad():  # the checkpoint's own sigmoid(logit) for the rendered prefixes
        expected = [torch.sigmoid(model(tok(text, return_tensors="pt").input_ids).logits[0, 0]).item()
                    for text in (question + "\n", question + "\n2 + 3 = 5\n")]
    assert values == pytest.approx(expected, abs=1e-4)


def _run(cfg, servers, out, questions=None, iteration=1):
    from restmcts.actors.search_pass import run_pass
    from restmcts.tasks import make_task

    questions = questions or make_task(cfg.data).questions("train", 12)
    return questions, run_pass(cfg, servers, questions, cfg.search, iteration, str(out))


def test_search_pass_writes_the_replay_once_per_question(servers, tiny_ckpt, tmp_path):
    cfg = _cfg(tiny_ckpt)
    questions, summary = _run(cfg, servers, tmp_path)
    traces = pq.read_table(tmp_path / "traces.parquet")
    values = pq.read_table(tmp_path / "values.parquet")
    # The README's replay schema, read back from the files a real pass wrote.
    assert [(f.name, str(f.type), f.nullable) for f in traces.schema][:10] == [
        ("question_id", "string", True), ("question", "string", True), ("steps", "list<element: string>", True),
        ("answer", "string", True), ("correct", "bool", True), ("tokens", "int64", True),
        ("strategy", "string", True), ("iteration", "int32", True), ("chosen", "bool", True),
        ("value", "double", True)]
    assert [(f.name, str(f.type)) for f in values.schema] == [
        ("question_id", "string"), ("question", "string"), ("steps", "list<element: string>"),
        ("value", "double"), ("distance", "int32"), ("on_correct_path", "bool"), ("iteration", "int32")]
    assert traces.column("value").null_count < traces.num_rows, "MCTS* stores the PRM value of its solutions"
    ids = traces.column("question_id").to_pylist()
    order = [q.id for q in questions]
    assert ids and set(ids) <= set(order)
    assert ids == sorted(ids, key=order.index), "rows are grouped in question order"
    assert len(set(ids)) == len(questions), "every question has its rows (unverified solutions included)"
    chosen = [i for i, c in zip(ids, traces.column("chosen").to_pylist(), strict=True) if c]
    assert len(chosen) == len(set(chosen)), "at most one chosen solution per question"
    assert summary.questions == 12 and summary.retries == 0 and summary.resumed == 0
    assert summary.trace_rows == traces.num_rows and summary.tokens > 0
    assert not (tmp_path / ".shards-traces").exists()


def test_search_pass_is_reproducible_for_a_seed(servers, tiny_ckpt, tmp_path):
    cfg = _cfg(tiny_ckpt)
    _run(cfg, servers, tmp_path / "a")
    _run(cfg, servers, tmp_path / "b")
    a = replay.read_traces(str(tmp_path / "a" / "traces.parquet"))
    b = replay.read_traces(str(tmp_path / "b" / "traces.parquet"))
    assert len(a) > 0
    # Steps, answers and flags are identical; PRM values to 1e-4 (a prefix scored in another batch
    # composition moves in its last bits).
    assert_same_rows(b, a)
    assert_same_rows(replay.read_values(str(tmp_path / "b" / "values.parquet")),
                     replay.read_values(str(tmp_path / "a" / "values.parquet")))


@pytest.mark.slow
def test_a_killed_search_job_resumes_without_duplicates(servers, tiny_ckpt, tmp_path):
    """kill -9 jobs/search.py once some chunks are durable: the rerun redoes only the rest, and the
    replay equals an undisturbed pass row for row."""
    from restmcts.tasks import make_task

    overrides = ["search.num_simulations=4", "search.max_depth=2", "search.max_step_tokens=8",
                 "search.num_workers=2", "search.trees_per_worker=4", "data.arith_min_ops=1",
                 "data.arith_max_ops=2", "data.num_questions=12"]
    cfg = _cfg(tiny_ckpt, *overrides)
    questions = make_task(cfg.data, seed=cfg.loop.seed).questions("train", 12)  # what the job searches
    _run(cfg, servers, tmp_path / "full", questions)

    out = tmp_path / "resumed"
    args = ["--out", out, f"model.policy={tiny_ckpt}/policy", f"model.prm={tiny_ckpt}/prm", *overrides,
            "ray.num_cpus=8", "ray.dashboard=false"]
    proc = start_job(tmp_path / "job.log", "jobs/search.py", *args)
    shard_dir = out / ".shards-traces"
    wait_for(lambda: any(shard_dir.glob("*.done.json")), proc, "a chunk's done marker")
    kill_job(proc)
    assert not (out / "traces.parquet").exists(), "killed before the merge"
    markers = sorted(shard_dir.glob("*.done.json"))
    done = {qid for m in markers for qid in json.loads(m.read_text())["question_ids"]}
    assert 0 < len(done) < len(questions)
    # A kill inside a chunk's write leaves shards without a marker: they are dropped and redone.
    (shard_dir / "chunk-orphan.values.parquet").write_bytes(b"half a file")

    finish(start_job(tmp_path / "job.log", "jobs/search.py", *args))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] == len(done) and summary["questions"] == len(questions)
    assert_same_rows(replay.read_traces(str(out / "traces.parquet")),
                     replay.read_traces(str(tmp_path / "full" / "traces.parquet")))
    assert_same_rows(replay.read_values(str(out / "values.parquet")),
                     replay.read_values(str(tmp_path / "full" / "values.parquet")))
    assert not shard_dir.exists()


def test_search_job_cli(ray_local, tiny_ckpt, tmp_path):
    """jobs/search.py attaches to the running Ray, writes the replay and a summary."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_job", "jobs/search.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    out = tmp_path / "job"
    assert job.main(["--out", str(out), f"model.policy={tiny_ckpt}/policy", f"model.prm={tiny_ckpt}/prm",
                     "data.num_questions=4", "search.num_simulations=2", "search.max_depth=3",
                     "search.max_step_tokens=6", "search.num_workers=1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 4 and (out / "traces.parquet").exists() and (out / "values.parquet").exists()


@pytest.mark.slow
def test_replay_values_follow_the_inference_rule(ray_local, trained_ckpt, tmp_path):
    """On a real pass: every value row's parent prefix is present and v follows ALGORITHM.md's rule."""
    from restmcts.actors.search_pass import run_pass
    from restmcts.actors.servers import start_servers
    from restmcts.tasks import make_task

    cfg = load_config("configs/arith-tiny.yaml", [
        f"model.policy={trained_ckpt}/policy", f"model.prm={trained_ckpt}/prm",
        "data.arith_min_ops=1", "data.arith_max_ops=2", "search.num_simulations=8", "search.max_depth=4",
        "search.num_workers=2", "search.trees_per_worker=8",
    ])
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    try:
        questions = make_task(cfg.data).questions("train", 16)
        summary = run_pass(cfg, servers, questions, cfg.search, 1, str(tmp_path))
    finally:
        servers.shutdown()
    values = replay.read_values(str(tmp_path / "values.parquet"))
    traces = replay.read_traces(str(tmp_path / "traces.parquet"))
    solved = {t.question_id for t in traces if t.correct}
    assert summary.solved == len(solved) > 0 and values
    assert {v.question_id for v in values} == solved, "values come exactly from trees with a correct leaf"
    by_prefix = {(v.question_id, v.steps): v for v in values}
    assert len(by_prefix) == len(values), "one row per (question, prefix)"
    for v in values:
        assert 0.0 <= v.value <= 1.0 and v.distance >= 1
        parent_v = 0.0 if len(v.steps) == 1 else by_prefix[(v.question_id, v.steps[:-1])].value
        r = 1.0 if v.on_correct_path else -1.0
        assert v.value == pytest.approx(max(0.0, parent_v + (1.0 - parent_v) * r / v.distance))
    for t in traces:  # the final step of a verified trace is worth 1
        if t.correct:
            assert by_prefix[(t.question_id, t.steps)].value == pytest.approx(1.0)
