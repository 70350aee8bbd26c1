"""Two groups of search settings: data generation (`search`) and evaluation (`eval_search`)."""

from __future__ import annotations

import pytest

from restmcts.config import ConfigError, EvalSearchConfig, SearchConfig, evaluation_search, load_config
from restmcts.evaluation.grid import pass_search_config

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
    assert ev.max_step_tokens == cfg.search.max_step_tokens and ev.num_workers == cfg.search.num_workers
    assert not cfg.search.early_stop and cfg.search.rollout_branch == 1


def test_evaluation_overrides_reach_every_evaluation_pass():
    cfg = load_config("configs/arith-tiny.yaml", ["eval_search.end_gate=0.95", "search.end_gate=0.5"])
    point = pass_search_config(cfg, "mcts_star", 12)
    assert point.num_simulations == 12 and point.end_gate == 0.95 and point.early_stop
    assert pass_search_config(cfg, "sc", 4).num_samples == 4
    assert cfg.search.end_gate == 0.5  # data generation keeps its own


def test_loop_evaluate_uses_the_evaluation_group(monkeypatch, tmp_path):
    from restmcts.loop import driver

    seen = []

    def record(cfg, servers, questions, search_cfg, *args, **kwargs):
        seen.append(search_cfg)
        raise RuntimeError("stop here")

    monkeypatch.setattr(driver, "run_pass", record)
    cfg = load_config("configs/arith-tiny.yaml", ["loop.eval_strategy=mcts_star", "data.num_test=2"])
    loop = driver.SelfTraining(cfg, str(tmp_path))
    loop.servers = object()
    with pytest.raises(RuntimeError, match="stop here"):
        loop.evaluate(0)
    assert seen[0].strategy == "mcts_star" and picked(seen[0], AUTHORS_EVAL) == AUTHORS_EVAL


def test_evaluation_group_errors_name_the_key():
    with pytest.raises(ConfigError, match="eval_search.end_gate"):
        load_config(None, ["eval_search.end_gate=1.5"])
    with pytest.raises(ConfigError, match="eval_search.rollout_brnch: unknown key. Did you mean 'rollout_branch'"):
        load_config(None, ["eval_search.rollout_brnch=2"])
