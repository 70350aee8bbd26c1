"""jobs/bootstrap.py end to end with tiny budgets, plus the small pieces it relies on."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "bootstrap.hidden_size=32", "bootstrap.num_layers=1", "bootstrap.num_heads=2",
    "bootstrap.sft_examples=100", "bootstrap.sft_steps=20", "bootstrap.sft_batch_size=8",
    "bootstrap.prm_questions=8", "bootstrap.prm_rollouts=2", "bootstrap.prm_steps=5",
    "bootstrap.prm_batch_size=8", "bootstrap.eval_samples=2", "bootstrap.max_new_tokens=48",
    "data.arith_train_size=200", "data.arith_test_size=16", "data.num_test=8",
]


def _bootstrap(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "jobs/bootstrap.py"), "--config", str(ROOT / "configs/arith-tiny.yaml"),
           "--out", str(out), *TINY, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bootstrap") / "run"
    result = _bootstrap(out)
    assert "greedy accuracy" in result.stdout
    return out


def test_checkpoints_load_with_auto_classes(built):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    policy = AutoModelForCausalLM.from_pretrained(built / "policy")
    prm = AutoModelForSequenceClassification.from_pretrained(built / "prm")
    assert policy.config.num_hidden_layers == 1 and prm.config.num_labels == 1
    ids = torch.tensor([[4, 40, 5, 40, 26]])
    assert policy(input_ids=ids).logits.shape == (1, 5, policy.config.vocab_size)
    assert prm(input_ids=ids).logits.shape == (1, 1)
    assert (built / "policy" / "model.safetensors").is_file()
    assert (built / "prm" / "model.safetensors").is_file()


def test_tokenizer_round_trips_an_arith_solution(built):
    from transformers import AutoTokenizer

    from restmcts.config import DataConfig
    from restmcts.prompt import PromptFormat
    from restmcts.tasks.arith import ArithTask

    tok = AutoTokenizer.from_pretrained(built / "policy")
    problem = ArithTask(DataConfig(arith_train_size=10, arith_test_size=5)).problems("test")[0]
    text = PromptFormat().render(problem.text, problem.solution())
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    assert tok.convert_ids_to_tokens(ids).count("\n") == len(problem.solution()) + 1


def test_the_models_learned_from_the_replay_files_beside_them(built):
    """OUT/sft.parquet holds the SFT examples (the task's solutions, all correct) and
    OUT/values.parquet the Monte Carlo labels: one sampled solution's prefixes per question."""
    from restmcts import replay
    from restmcts.bootstrap.arith import bootstrap_problems
    from restmcts.config import load_config
    from restmcts.tasks.arith import ArithTask

    report = json.loads((built / "bootstrap.json").read_text())
    cfg = load_config(ROOT / "configs/arith-tiny.yaml", TINY)
    sft_problems, mc_problems = bootstrap_problems(cfg, ArithTask(cfg.data, seed=cfg.loop.seed).problems("train"))
    traces = replay.read_traces(str(built / "sft.parquet"))
    assert [(t.question, t.steps, t.answer) for t in traces] == [
        (p.text, tuple(p.solution()), str(p.answer)) for p in sft_problems]
    assert all(t.correct for t in traces)

    values = replay.read_values(str(built / "values.parquet"))
    assert len(values) == report["prm_samples"] > 0
    assert sum(v.value for v in values) / len(values) == pytest.approx(report["prm_mean_label"])
    assert {v.question for v in values} <= {p.text for p in mc_problems}
    for question in {v.question for v in values}:
        steps = [v.steps for v in values if v.question == question]
        assert steps == [steps[-1][:k] for k in range(1, len(steps[-1]) + 1)]  # every prefix of one solution
    assert all(0.0 <= v.value <= 1.0 for v in values)


def test_report_has_every_field(built):
    from restmcts.bootstrap.arith import BootstrapReport

    report = json.loads((built / "bootstrap.json").read_text())
    assert set(report) == {f.name for f in dataclasses.fields(BootstrapReport)}
    assert set(report["timings_s"]) == {"sft", "mc_labels", "train_prm", "evaluate", "total"}
    assert report["params"]["policy"] > 0 and report["params"]["prm"] > 0
    assert report["test_questions"] == 16 and report["sft_examples"] == 100 and report["prm_questions"] == 8
    assert report["sft_ops"]["4"] == 30 and sum(report["sft_ops"].values()) == 100  # easy to hard
    for key in ("greedy_accuracy", "sample_accuracy", "pass_at_k", "prm_auroc", "prm_mean_label"):
        assert 0.0 <= report[key] <= 1.0


def test_same_seed_gives_identical_weights(built, tmp_path):
    from restmcts.checkpoints import read_weights

    _bootstrap(tmp_path / "again")
    for role in ("policy", "prm"):
        a, b = read_weights(str(built / role)), read_weights(str(tmp_path / "again" / role))
        assert a.keys() == b.keys()
        assert all((a[k] == b[k]).all() for k in a), role


@pytest.mark.parametrize("override", ["bootstrap.max_ops=0", "bootstrap.longer_examples=201"])
def test_train_split_too_small_names_the_keys(tmp_path, override):
    with pytest.raises(subprocess.CalledProcessError) as err:
        _bootstrap(tmp_path / "bad", "bootstrap.sft_examples=300", override)
    assert "data.arith_train_size" in err.value.stderr and "bootstrap.longer_examples" in err.value.stderr


def test_easy_to_hard_questions_never_meet_the_search_or_test_questions():
    from restmcts.bootstrap.arith import bootstrap_problems
    from restmcts.config import load_config
    from restmcts.tasks.arith import ArithTask

    cfg = load_config(ROOT / "configs/arith-tiny.yaml", [
        "bootstrap.sft_examples=300", "bootstrap.prm_questions=40", "bootstrap.longer_examples=12",
        "data.arith_train_size=100"])
    task = ArithTask(cfg.data, seed=cfg.loop.seed)
    train, test = task.problems("train"), task.problems("test")
    sft, mc = bootstrap_problems(cfg, train)
    assert len(sft) == 300 and len(mc) == 40
    assert [len(p.ops) for p in sft].count(4) == 12 and sft[-12:] == train[-12:]  # the train split's end
    assert {len(p.ops) for p in sft[:-12] + mc} == {2, 3}
    texts = {p.text for p in sft + mc}
    assert len(texts) == 340
    assert not texts & {p.text for p in train[:-12] + test}
    # Learning the train split itself (max_ops = 0): its end, in the same two parts.
    plain = ArithTask(cfg.replace("data.arith_train_size=400").data).problems("train")
    plain_sft, plain_mc = bootstrap_problems(cfg.replace("bootstrap.max_ops=0"), plain)
    assert plain_sft == plain[-300:] and plain_mc == plain[-340:-300]


def test_bootstrap_questions_may_not_be_search_questions():
    from restmcts.bootstrap.arith import bootstrap_problems
    from restmcts.config import ConfigError, load_config
    from restmcts.tasks.arith import ArithTask

    cfg = load_config(ROOT / "configs/arith-tiny.yaml", ["bootstrap.max_ops=4", "data.arith_train_size=100"])
    with pytest.raises(ConfigError, match="bootstrap.max_ops: must be below data.arith_min_ops"):
        bootstrap_problems(cfg, ArithTask(cfg.data).problems("train"))


def test_sft_rows_mask_the_prompt_and_end_with_eos(built):
    """The policy learner reads a bootstrap row as prompt (no loss) + solution + EOS (loss)."""
    from restmcts.bootstrap.arith import sft_traces
    from restmcts.config import load_config
    from restmcts.learners.engine import IGNORE_INDEX
    from restmcts.learners.policy import PolicyLearner
    from restmcts.prompt import PromptFormat
    from restmcts.tasks.arith import Problem

    learner = PolicyLearner(load_config(ROOT / "configs/arith-tiny.yaml"))
    learner.load_tokenizer(str(built / "policy"))
    tok, fmt = learner.tokenizer, PromptFormat()
    p = Problem(7, (("+", 5), ("*", 3)))
    example, cut = learner.encode(sft_traces([p])[0])
    n_prompt = example.labels.count(IGNORE_INDEX)
    assert not cut and example.labels[n_prompt:] == example.input_ids[n_prompt:]
    assert tok.decode(example.input_ids[:n_prompt]) == fmt.prompt(p.text)
    assert tok.decode(example.input_ids[n_prompt:-1]) == "7 + 5 = 12\n12 * 3 = 36\nThe answer is 36\n"
    assert example.input_ids[-1] == tok.eos_token_id


def test_auroc():
    from restmcts.evaluation.stats import auroc

    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9], [True, True, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([0.3, 0.4], [True, True]) == 0.5


def test_warmup_cosine_rises_over_5_percent_then_falls_to_a_tenth():
    from restmcts.bootstrap.inprocess import WARMUP_RATIO
    from restmcts.config import LearnersConfig
    from restmcts.learners.engine import scheduled_lr

    cfg = LearnersConfig(lr_schedule="warmup_cosine", warmup_ratio=WARMUP_RATIO)
    lrs = [scheduled_lr(cfg, 1.0, s, 100) for s in range(100)]
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:], strict=False))  # falls at every step after the warmup
    assert lrs[52] == pytest.approx(0.55, abs=0.02)  # the cosine's middle: halfway to the floor
    assert lrs[-1] == pytest.approx(0.1)
    assert scheduled_lr(cfg, 1.0, 0, 1) == 1.0  # a one-step phase still takes a step


@pytest.mark.parametrize(("steps", "rows", "epochs"), [(200, 800, 8), (1600, 4000, 13), (5, 17, 2), (1, 1000, 1),
                                                       (0, 100, 0)])
def test_bootstrap_steps_become_learner_epochs(steps, rows, epochs):
    import torch

    from restmcts.bootstrap.inprocess import learner_config
    from restmcts.config import load_config

    cfg = load_config(ROOT / "configs/arith-tiny.yaml", ["bootstrap.seed=3"])
    lc = learner_config(cfg, steps, 32 if rows > 17 else 8, 1e-3, rows).learners
    assert (lc.policy_epochs, lc.prm_epochs) == (epochs, epochs)
    assert lc.num_learners == 0 and lc.num_cpus == torch.get_num_threads() and lc.seed == 3
    assert (lc.policy_lr, lc.prm_lr, lc.weight_decay, lc.max_grad_norm) == (1e-3, 1e-3, 0.0, 1.0)
    assert (lc.lr_schedule, lc.warmup_ratio, lc.grad_accum) == ("warmup_cosine", 0.05, 1)
    assert lc.micro_batch_size == (32 if rows > 17 else 8)


def test_monte_carlo_questions_share_the_engines_batches(built):
    """All questions run at once: the policy engine's forward batches hold rows of several."""
    import asyncio

    from restmcts.actors.client import ModelClient
    from restmcts.bootstrap.inprocess import chain_settings, engine_settings
    from restmcts.bootstrap.labels import label_questions
    from restmcts.config import load_config
    from restmcts.engines import make_policy_engine
    from restmcts.prompt import PromptFormat
    from restmcts.tasks import Question
    from restmcts.tasks.arith import ArithTask

    cfg = load_config(ROOT / "configs/arith-tiny.yaml", [*TINY, "bootstrap.prm_rollouts=1"])
    task = ArithTask(cfg.data)
    questions = [Question(f"q{i}", p.text, str(p.answer)) for i, p in enumerate(task.problems("test")[:6])]
    engine = make_policy_engine(dataclasses.replace(engine_settings(cfg), max_wait_ms=50.0), str(built / "policy"))
    try:
        client = ModelClient.in_process(engine, None, PromptFormat(), chain_settings(cfg))
        records = asyncio.run(label_questions(client, task, questions, cfg))
        stats = engine.stats()
    finally:
        engine.close()
    assert records and {r.question_id for r in records} <= {q.id for q in questions}
    assert stats.max_batch_rows >= len(questions)  # the first steps of every question in one forward
    with pytest.raises(RuntimeError, match="no PRM engine"):
        asyncio.run(client.score("Start with 3.", [["3 + 4 = 7"]]))
