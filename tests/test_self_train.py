"""The self-training loop end to end on local Ray: layout, metrics, ReST-EM switch, kill and resume."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from killing import finish, kill_actor, kill_job, start_job, wait_for  # tests/ is on sys.path
from rows import row_differences

from restmcts import replay

ROOT = Path(__file__).resolve().parents[1]


def _overrides(ckpt) -> list[str]:
    return [
        f"model.policy={ckpt}/policy", f"model.prm={ckpt}/prm",
        "loop.iterations=1", "data.num_questions=6", "data.num_test=4",
        "data.arith_min_ops=1", "data.arith_max_ops=2",
        "search.num_simulations=6", "search.max_depth=3", "search.max_step_tokens=16",
        "search.num_workers=1", "search.trees_per_worker=4",
        "learners.num_learners=0", "learners.policy_epochs=1", "learners.prm_epochs=1",
    ]


def _layout_ok(out: Path, iterations: int) -> None:
    assert (out / "iter_0" / "eval_traces.parquet").exists()
    for i in range(1, iterations + 1):
        d = out / f"iter_{i}"
        for name in ("traces.parquet", "values.parquet", "eval_traces.parquet", "policy_data.parquet"):
            assert (d / name).exists(), name
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        AutoModelForCausalLM.from_pretrained(d / "policy")
        AutoModelForSequenceClassification.from_pretrained(d / "prm", num_labels=1)


def test_one_iteration_writes_the_documented_layout(ray_local, tiny_ckpt, tmp_path):
    from restmcts.config import load_config
    from restmcts.loop import self_train

    out = tmp_path / "run"
    cfg = load_config(ROOT / "configs/arith-tiny.yaml", _overrides(tiny_ckpt))
    workers = _search_workers_started()
    start = time.time()
    records = self_train(cfg, str(out))
    wall = time.time() - start
    assert _search_workers_started() - workers == cfg.search.num_workers, "one pool serves all three passes"
    assert json.loads((out / "weights.json").read_text()) == {
        "policy": {"version": 1, "path": str(out / "iter_1" / "policy")},
        "prm": {"version": 1, "path": str(out / "iter_1" / "prm")}}
    _layout_ok(out, 1)
    phases = [(r.iteration, r.phase) for r in records]
    assert phases == [(0, "evaluate"), (1, "search"), (1, "extract"), (1, "train_prm"), (1, "train_policy"),
                      (1, "sync"), (1, "evaluate")]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == [json.loads(json.dumps(r.to_dict())) for r in records]
    assert 0 < sum(r["seconds"] for r in lines) <= wall, "phase durations, not timestamps"
    evals = [r for r in lines if r["phase"] == "evaluate"]
    assert [r["questions"] for r in evals] == [4, 4]
    for r in evals:  # the logged accuracy is the share of held-out questions whose chosen answer is right
        traces = replay.read_traces(str(out / f"iter_{r['iteration']}" / "eval_traces.parquet"))
        right = {t.question_id for t in traces if t.chosen and t.correct}
        assert r["accuracy"] == len(right) / 4
        assert r["tokens"] >= sum({t.question_id: t.tokens for t in traces}.values())
    passes = [r for r in lines if r["phase"] in ("search", "evaluate")]
    assert [r["bad_scores"] for r in passes] == [0] * 3, "a healthy PRM gives no score to repair"
    assert self_train(cfg, str(out)) == records, "a finished run does nothing"


@pytest.fixture(scope="module")
def nan_prm(tiny_ckpt, tmp_path_factory) -> Path:
    """tiny_ckpt's PRM with its value head set to NaN: every score it gives is NaN."""
    import torch

    from restmcts.checkpoints import load_prm, load_tokenizer, save

    prm = load_prm(str(tiny_ckpt / "prm"))
    with torch.no_grad():
        prm.score.weight.fill_(float("nan"))
    out = tmp_path_factory.mktemp("nan_prm") / "prm"
    save(prm, load_tokenizer(str(tiny_ckpt / "prm")), out)
    return out


def test_nan_prm_scores_are_counted_in_summary_and_metrics(ray_local, tiny_ckpt, nan_prm, tmp_path):
    """A PRM that answers NaN: the pass still ends, and every repaired score is counted in the
    search job's summary.json and in the loop's metrics.jsonl."""
    import importlib.util

    from restmcts.config import load_config
    from restmcts.loop import self_train

    spec = importlib.util.spec_from_file_location("search_job", ROOT / "jobs/search.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    overrides = [*_overrides(tiny_ckpt), f"model.prm={nan_prm}"]
    assert job.main(["--out", str(tmp_path / "search"), *overrides]) == 0
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert summary["questions"] == 6 and summary["prm_calls"] > 0
    assert summary["bad_scores"] == summary["prm_calls"], "every NaN score was repaired and counted"

    cfg = load_config(ROOT / "configs/arith-tiny.yaml",
                      [*overrides, "loop.iterations=0", "loop.eval_strategy=mcts_star"])  # PRM-guided evaluation
    self_train(cfg, str(tmp_path / "loop"))
    [record] = [json.loads(x) for x in (tmp_path / "loop" / "metrics.jsonl").read_text().splitlines()]
    assert record["phase"] == "evaluate" and record["prm_calls"] > 0
    assert record["bad_scores"] == record["prm_calls"]


def test_rest_em_switch_trains_no_prm(ray_local, tiny_ckpt, tmp_path):
    from restmcts.config import load_config
    from restmcts.loop import self_train

    out = tmp_path / "em"
    cfg = load_config(ROOT / "configs/arith-tiny.yaml", _overrides(tiny_ckpt) + [
        "loop.algorithm=rest_em", "loop.rest_em_samples=2", "search.release_during_training=true"])
    workers = _search_workers_started()
    records = self_train(cfg, str(out))
    assert "train_prm" not in {r.phase for r in records}
    # released while the policy trains: one pool for evaluate 0 and search 1, a new one for evaluate 1
    assert _search_workers_started() - workers == 2 * cfg.search.num_workers
    sync = next(r for r in records if r.phase == "sync")
    assert sync.stats.method == "collective" and sync.stats.prm_seconds == 0.0, "only the policy changed"
    traces = replay.read_traces(str(out / "iter_1" / "traces.parquet"))
    assert {t.strategy for t in traces} == {"sc"}
    assert not (out / "iter_1" / "prm").exists()


def _search_workers_started() -> int:
    """SearchWorker actors this session's Ray has started so far (alive or not)."""
    from ray._private import state

    return sum(a["ActorClassName"] == "SearchWorker" for a in state.actors().values())


def _job(out: Path, ckpt, *extra: str):
    return start_job(out.parent / f"{out.name}.log", "jobs/self_train.py", "--out", out, *_overrides(ckpt),
                     "ray.num_cpus=8", "ray.dashboard=false", *extra)


def _replay(out: Path) -> dict[str, list]:
    """Every replay file of a run, read back as records."""
    files = {}
    for f in sorted(out.glob("iter_*/*.parquet")):
        read = replay.read_values if f.name == "values.parquet" else replay.read_traces
        files[f"{f.parent.name}/{f.name}"] = read(str(f))
    return files


def _phases(out: Path) -> list[tuple[int, str]]:
    return [(r["iteration"], r["phase"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.slow
def test_killed_driver_resumes_to_the_same_replay(trained_ckpt, tmp_path):
    """kill -9 the driver mid search pass and again mid training; the rerun ends with the replay
    and the weights of an undisturbed run, and every phase is logged exactly once."""
    from restmcts.checkpoints import read_weights

    clean = tmp_path / "clean"
    finish(_job(clean, trained_ckpt))

    killed = tmp_path / "killed"
    # 1. Mid search pass: some chunks are durable shards, the pass has not merged them yet.
    proc = _job(killed, trained_ckpt)
    shards = killed / "iter_1" / ".shards-traces"
    wait_for(lambda: any(shards.glob("*.done.json")), proc, "a search chunk's done marker")
    kill_job(proc)
    assert not (killed / "iter_1" / "traces.parquet").exists(), "killed before the pass ended"
    assert (0, "evaluate") in _phases(killed) and (1, "search") not in _phases(killed)

    # 2. Mid training: the PRM phase has started (extract is logged), its checkpoint is not written.
    proc = _job(killed, trained_ckpt)
    wait_for(lambda: (1, "extract") in _phases(killed), proc, "the extract phase's log line")
    kill_job(proc)
    assert not (killed / "iter_1" / "prm").exists(), "killed before train_prm ended"
    assert (1, "train_prm") not in _phases(killed)

    finish(_job(killed, trained_ckpt))
    assert _phases(killed) == _phases(clean), "every phase ran to completion exactly once"
    got, expected = _replay(killed), _replay(clean)
    assert sorted(got) == sorted(expected)
    assert all(expected[f"iter_1/{n}.parquet"] for n in ("traces", "values", "policy_data")), "nothing to compare"
    for name, rows in expected.items():
        diffs = row_differences(got[name], rows)
        assert not diffs, f"{name}:\n" + "\n".join(diffs[:10])
    for role in ("policy", "prm"):
        a, b = read_weights(str(killed / "iter_1" / role)), read_weights(str(clean / "iter_1" / role))
        assert a.keys() == b.keys()
        for k in a:
            assert (a[k] - b[k]).abs().max().item() <= 1e-5, f"{role} {k}"


class _KillServersAfterSync:
    """Wraps SelfTraining.sync: after iteration `at`'s sync, SIGKILL every policy and PRM server
    process, and wait until Ray has restarted each one (a new pid answers)."""

    def __init__(self, at: int):
        self.at = at
        self.killed: list[tuple[int, int]] = []  # (old pid, new pid)

    def wrap(self, run):
        original = run.sync

        def sync(i: int):
            stats = original(i)
            if i == self.at:
                servers = run.rollout.servers
                self.killed += [kill_actor(handle) for handle in servers.policy + servers.prm]
            return stats

        run.sync = sync
        return run


@pytest.mark.slow
def test_servers_killed_after_a_sync_come_back_with_the_synced_weights(ray_local, trained_ckpt, tmp_path):
    """SIGKILL the policy and PRM servers right after iteration 1's sync. Ray restarts them with
    their first constructor arguments (the bootstrap checkpoints); they read the run's version
    record instead, so iteration 1's held-out traces and iteration 2's search equal an
    undisturbed run's, row for row."""
    from restmcts.config import load_config
    from restmcts.loop.driver import SelfTraining

    cfg = load_config(ROOT / "configs/arith-tiny.yaml", [
        *_overrides(trained_ckpt), "loop.iterations=2", "learners.policy_epochs=4", "learners.prm_epochs=2"])
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    SelfTraining(cfg, str(clean)).run()
    kill = _KillServersAfterSync(at=1)
    kill.wrap(SelfTraining(cfg, str(killed))).run()

    assert len(kill.killed) == 2 and all(old != new for old, new in kill.killed), "both servers died and restarted"
    got, expected = _replay(killed), _replay(clean)
    assert expected["iter_1/eval_traces.parquet"] != expected["iter_0/eval_traces.parquet"], \
        "iteration 1's models answer differently from the bootstrap's: the comparison can tell them apart"
    for name in ("iter_1/eval_traces.parquet", "iter_2/traces.parquet", "iter_2/values.parquet",
                 "iter_2/eval_traces.parquet"):
        diffs = row_differences(got[name], expected[name])
        assert not diffs, f"{name}:\n" + "\n".join(diffs[:10])
