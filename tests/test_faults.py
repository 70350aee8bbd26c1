"""Failures injected on local Ray. A search worker or an inference server killed with SIGKILL mid-pass:
the replay still holds every question exactly once, row for row the same as an undisturbed pass
with the same seed. A learner killed mid-phase: the phase starts over and ends with the same weights
as an undisturbed one, and no partial checkpoint is left."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from killing import Watch, cpu_seconds
from rows import assert_same_rows

from restmcts import replay
from restmcts.config import load_config

pytestmark = pytest.mark.slow


def _cfg(ckpt):
    return load_config("configs/arith-tiny.yaml", [
        f"model.policy={ckpt}/policy", f"model.prm={ckpt}/prm",
        "search.num_simulations=6", "search.max_depth=3", "search.max_step_tokens=8",
        "search.num_workers=2", "search.trees_per_worker=4", "data.arith_min_ops=1", "data.arith_max_ops=2",
    ])


def _rows(out: Path) -> tuple[list, list]:
    return replay.read_traces(str(out / "traces.parquet")), replay.read_values(str(out / "values.parquet"))


def _alive_pids(class_name: str) -> list[int]:
    """Pids of the live actors of a class in this session's Ray (read from the GCS: no dashboard needed)."""
    from ray._private import state

    return [int(a["Pid"]) for a in state.actors().values()
            if a["ActorClassName"] == class_name and a["State"] == "ALIVE" and a["Pid"]]


def _pass_with_kill(cfg, questions, out: Path, victim: str | None):
    """Run a pass; when `victim` is a class name, SIGKILL one of its actors once 2 chunks are done."""
    from restmcts.actors.search_pass import run_pass
    from restmcts.actors.servers import start_servers

    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    result: dict = {}
    try:
        runner = threading.Thread(target=lambda: result.update(
            summary=run_pass(cfg, servers, questions, cfg.search, 1, str(out))))
        runner.start()
        killed = None
        shards = out / ".shards-traces"
        while victim and killed is None and runner.is_alive():
            done = [f for f in os.listdir(shards) if f.endswith(".done.json")] if shards.exists() else []
            if len(done) >= 2:
                pids = _alive_pids(victim)
                assert pids, f"no live {victim}"
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        runner.join(timeout=300)
        assert "summary" in result, "the pass did not finish"
        return result["summary"], killed
    finally:
        servers.shutdown()


@pytest.fixture(scope="module")
def clean(ray_local, tiny_ckpt, tmp_path_factory):
    from restmcts.tasks import make_task

    cfg = _cfg(tiny_ckpt)
    questions = make_task(cfg.data, seed=0).questions("train", 24)
    out = tmp_path_factory.mktemp("clean")
    summary, _ = _pass_with_kill(cfg, questions, out, None)
    return cfg, questions, summary, _rows(out)


@pytest.mark.parametrize("victim", ["SearchWorker", "PolicyServer", "PRMServer"])
def test_a_killed_actor_loses_and_duplicates_nothing(clean, tmp_path, victim):
    cfg, questions, clean_summary, (clean_traces, clean_values) = clean
    summary, killed = _pass_with_kill(cfg, questions, tmp_path, victim)
    assert killed is not None, "the pass ended before the kill"
    traces, values = _rows(tmp_path)
    assert summary.questions == len(questions) and summary.failures == clean_summary.failures
    assert {t.question_id for t in traces} == {q.id for q in questions}
    assert_same_rows(traces, clean_traces)  # same rows, same order as the undisturbed pass
    assert_same_rows(values, clean_values)
    if victim == "SearchWorker":
        assert summary.retries >= 1, "the dead worker's chunk was resubmitted and counted"


@pytest.fixture(scope="module")
def learner_data(tmp_path_factory):
    from restmcts.replay import Trace

    rows = [Trace(question_id=f"q{i}", question=f"Start with {i}. Add 5. What is the result?",
                  steps=(f"{i} + 5 = {i + 5}", f"The answer is {i + 5}"), answer=str(i + 5), correct=True,
                  tokens=10, strategy="mcts_star", iteration=1) for i in range(64)]
    data = str(tmp_path_factory.mktemp("learner_data") / "traces.parquet")
    replay.write_records(rows, Trace, data)
    return data


@pytest.fixture(scope="module")
def clean_policy_phase(ray_local, tiny_ckpt, learner_data, tmp_path_factory):
    from restmcts.learners import train_phase

    cfg = load_config(None, ["learners.num_learners=1", "learners.micro_batch_size=4", "learners.policy_epochs=8",
                             "learners.max_seq_len=64"])
    out = tmp_path_factory.mktemp("clean_phase") / "policy"
    return cfg, train_phase(cfg, "policy", str(tiny_ckpt / "policy"), [learner_data], str(out))


@pytest.mark.parametrize("moment", ["mid_step", "mid_save"])
def test_a_killed_learner_restarts_the_phase_and_matches_an_undisturbed_one(
        ray_local, tiny_ckpt, learner_data, clean_policy_phase, tmp_path, moment):
    """SIGKILL the learner actor while it trains (its init weights read, a CPU-second of optimizer
    steps spent, no checkpoint yet) or while it saves (its temporary checkpoint folder has just
    appeared). The phase starts over with a new learner and ends with the undisturbed weights."""
    import torch

    from restmcts.checkpoints import read_weights
    from restmcts.learners import train_phase

    cfg, clean = clean_policy_phase
    init = str(tiny_ckpt / "policy")
    out = tmp_path / "policy"
    restarts: list[int] = []
    result: dict = {}
    loaded = Watch(tiny_ckpt / "policy", closed=True)  # the learner has read its init weights
    saving = Watch(tmp_path)  # the learner's temporary checkpoint folder appears
    runner = threading.Thread(target=lambda: result.update(r=train_phase(
        cfg, "policy", init, [learner_data], str(out), on_restart=lambda n, err: restarts.append(n))))
    runner.start()
    try:
        pids: list[int] = []
        while not pids:
            assert runner.is_alive(), "the phase ended before its learner was seen"
            pids = _alive_pids("LearnerActor")
        [pid] = pids
        if moment == "mid_step":
            loaded.wait("model.safetensors", runner.is_alive)
            start = cpu_seconds(pid)
            while cpu_seconds(pid) - start < 1.0:  # optimizer steps (DeepSpeed start-up is a fraction of it)
                assert runner.is_alive()
                time.sleep(0.01)
            assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name], \
                "the learner had started saving: not a kill mid-step"
        else:
            name = saving.wait(".policy.tmp-", runner.is_alive)
        os.kill(pid, signal.SIGKILL)
    finally:
        loaded.close()
        saving.close()
    runner.join(timeout=600)
    assert restarts == [1] and result["r"].restarts == 1, "the kill landed before the learner returned"
    assert result["r"].weights_digests == clean.weights_digests, "the restarted phase trains from the same start"
    assert result["r"].steps == clean.steps and result["r"].final_loss == pytest.approx(clean.final_loss)
    saved, expected = read_weights(str(out)), read_weights(clean.out_path)  # the checkpoint on disk is whole
    assert saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved)
    left = sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name)
    assert not left, f"a killed save left {left} beside the checkpoint"
    if moment == "mid_save":
        assert name.startswith(".policy.tmp-")


def test_learners_that_keep_dying_fail_naming_the_setting(ray_local, tiny_ckpt, tmp_path, monkeypatch):
    import ray

    from restmcts.learners import group as group_mod

    def die(self, *args, **kwargs):
        raise ray.exceptions.RayActorError()

    monkeypatch.setattr(group_mod.LearnerGroup, "train", die)
    cfg = load_config(None, ["learners.num_learners=1", "learners.max_restarts=1"])
    with pytest.raises(RuntimeError, match=r"learners died 2 times \(learners.max_restarts=1\)"):
        group_mod.train_phase(cfg, "policy", str(tiny_ckpt / "policy"), [], str(tmp_path / "out"))
