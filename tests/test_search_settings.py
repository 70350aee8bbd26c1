"""Search settings: the tree's parameters apart from a pass's Ray settings, and two groups of
them, data generation (`search`) and evaluation (`eval_search`)."""

from __future__ import annotations

import dataclasses

import pytest

from restmcts.config import (
    ConfigError,
    EvalSearchConfig,
    SearchConfig,
    SearchSettings,
    evaluation_search,
    load_config,
)
from restmcts.evaluation.grid import pass_search_config

# How a pass runs: read from cfg.search by the pass, never handed to the search core.
PASS_KEYS = {"num_workers", "min_workers", "trees_per_worker", "worker_cpus", "worker_resource",
             "worker_start_timeout_s", "sequential_calls", "export_trees", "release_during_training"}

# The authors' two columns (ALGORITHM.md: "Reference defaults seen in the authors' code").
AUTHORS_EVAL = {"exploration": 0.4, "u_unvisited": 0.8, "end_gate": 0.9, "rollout_steps": 2,
                "rollout_branch": 1, "early_stop": True, "fallback_answer": True}
AUTHORS_DATA = {"exploration": 0.5, "u_unvisited": 0.9, "rollout_steps": 1, "rollout_branch": 1,
                "early_stop": False, "fallback_answer": False}


def picked(cfg, keys):
    return {k: getattr(cfg, k) for k in keys}


def test_defaults_are_the_authors_columns():
    assert picked(SearchConfig(), AUTHORS_DATA) == AUTHORS_DATA
    assert picked(EvalSearchConfig(), AUTHORS_EVAL) == AUTHORS_EVAL


@pytest.mark.parametrize("path", ["configs/arith-tiny.yaml", "configs/smollm2-gsm8k.yaml",
                                  "configs/qwen-math-gsm8k.yaml"])
def test_every_config_evaluates_with_the_evaluation_group(path):
    cfg = load_config(path)
    ev = evaluation_search(cfg, strategy="mcts_star")
    assert picked(ev, AUTHORS_EVAL) == AUTHORS_EVAL
    assert type(ev) is SearchSettings and ev.max_step_tokens == cfg.search.max_step_tokens
    assert not cfg.search.early_stop and cfg.search.rollout_branch == 1


def test_evaluation_overrides_reach_every_evaluation_pass():
    cfg = load_config("configs/arith-tiny.yaml", ["eval_search.end_gate=0.95", "search.end_gate=0.5"])
    largest = max(cfg.eval.simulation_budgets)
    point = pass_search_config(cfg, "mcts_star", largest)
    assert point.num_simulations == largest and point.end_gate == 0.95 and point.early_stop
    assert pass_search_config(cfg, "sc", 4).num_samples == 4
    assert cfg.search.end_gate == 0.5  # data generation keeps its own


def test_loop_evaluate_uses_the_evaluation_group(tmp_path):
    from restmcts.loop import driver

    seen = []

    class Rollout:
        def run_pass(self, questions, search_cfg, *args, **kwargs):
            seen.append(search_cfg)
            raise RuntimeError("stop here")

    cfg = load_config("configs/arith-tiny.yaml", ["loop.eval_strategy=mcts_star", "data.num_test=2"])
    loop = driver.SelfTraining(cfg, str(tmp_path))
    loop.rollout = Rollout()
    with pytest.raises(RuntimeError, match="stop here"):
        loop.evaluate(0)
    assert seen[0].strategy == "mcts_star" and picked(seen[0], AUTHORS_EVAL) == AUTHORS_EVAL


def test_evaluation_group_errors_name_the_key():
    with pytest.raises(ConfigError, match="eval_search.end_gate"):
        load_config(None, ["eval_search.end_gate=1.5"])
    with pytest.raises(ConfigError, match="eval_search.rollout_brnch: unknown key. Did you mean 'rollout_branch'"):
        load_config(None, ["eval_search.rollout_brnch=2"])


def names(cls):
    return {f.name for f in dataclasses.fields(cls)}


def test_the_search_section_is_the_tree_settings_plus_the_pass_settings():
    assert names(SearchConfig) == names(SearchSettings) | PASS_KEYS
    assert not names(SearchSettings) & PASS_KEYS
    assert names(EvalSearchConfig) <= names(SearchSettings)  # eval_search overlays tree settings only
    cfg = load_config("configs/arith-tiny.yaml", ["search.num_workers=3", "search.sequential_calls=true"])
    settings = cfg.search.settings()
    assert type(settings) is SearchSettings
    assert dataclasses.asdict(settings) == {k: v for k, v in dataclasses.asdict(cfg.search).items()
                                            if k not in PASS_KEYS}
    assert settings.settings() is settings


def test_evaluation_settings_carry_no_pass_settings():
    cfg = load_config("configs/arith-tiny.yaml")
    assert not names(type(evaluation_search(cfg))) & PASS_KEYS
    with pytest.raises(TypeError, match="num_workers"):
        evaluation_search(cfg, num_workers=3)  # a pass setting is cfg.search's, not the tree's


def test_tree_settings_are_checked_where_they_are_made():
    with pytest.raises(ConfigError, match="search.strategy: got 'beam'; allowed: 'mcts_star', 'cot', 'sc'"):
        SearchSettings(strategy="beam")
    with pytest.raises(ConfigError, match="search.branch: must be >= 1"):
        SearchSettings(branch=0)


def test_one_worker_searches_each_call_with_its_own_settings(ray_local, tiny_ckpt):
    """Two passes' calls in flight on one SearchWorker at once: each question is searched with the
    strategy, sample count and step budget its own call carried."""
    import ray

    from restmcts.actors.search_worker import SearchWorker
    from restmcts.actors.servers import start_servers
    from restmcts.tasks import task_for

    cfg = load_config("configs/arith-tiny.yaml", [
        f"model.policy={tiny_ckpt}/policy", f"model.prm={tiny_ckpt}/prm", "search.max_step_tokens=8",
        "search.max_depth=2", "data.arith_min_ops=1", "data.arith_max_ops=2"])
    questions = task_for(cfg).questions("train", 6)
    short_steps = dataclasses.replace(cfg.search.settings(), strategy="sc", num_samples=4, max_step_tokens=1)
    one_chain = dataclasses.replace(cfg.search.settings(), strategy="bon", num_samples=1)
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    try:
        worker = SearchWorker.remote(cfg, servers.policy, servers.prm)
        sc, bon = ray.get([worker.run.remote(questions, short_steps, 1), worker.run.remote(questions, one_chain, 1)])
        ray.kill(worker)
    finally:
        servers.shutdown()
    assert all(o.budget.policy_calls >= 4 for o in sc) and all(o.budget.policy_calls <= 2 for o in bon)
    assert all(o.budget.tokens <= o.budget.policy_calls for o in sc)  # one token per step
    assert sum(o.budget.tokens for o in bon) > sum(o.budget.policy_calls for o in bon)  # up to 8 per step
    assert {t.strategy for o in sc for t in o.traces} <= {"sc"} and {t.strategy for o in bon for t in o.traces} <= {"bon"}


def test_the_client_schedules_calls_as_the_pass_says_and_samples_as_the_search_says():
    """ModelClient.from_config takes `search.sequential_calls` (the pass); each question's propose
    takes its step budget and temperature from the settings it was made with."""
    import asyncio

    from restmcts.actors.client import ModelClient
    from restmcts.engines.base import Completion
    from restmcts.tasks import task_for

    requests = []

    async def generate(req):
        requests.append(req)
        return [Completion(f"2 + {i} = {2 + i}", 4, True) for i in range(req.n)]

    class Method:
        remote = staticmethod(generate)

    handle = type("Handle", (), {"generate": Method()})()
    for sequential, calls in ((True, [1, 1, 1]), (False, [3])):
        cfg = load_config(None, [f"search.sequential_calls={str(sequential).lower()}", "search.max_step_tokens=7"])
        client = ModelClient.from_config(cfg, [handle], [handle])
        settings = dataclasses.replace(cfg.search.settings(), max_step_tokens=3, temperature=0.2)
        models, _ = client.for_question(task_for(cfg), settings)
        requests.clear()
        assert len(asyncio.run(models.propose("Q?", [], 3, 0))) == 3
        assert [r.n for r in requests] == calls
        assert {(r.max_tokens, r.temperature) for r in requests} == {(3, 0.2)}
