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


def test_prm_values_do_not_depend_on_padding(built):
    """Texts of different lengths scored in one right-padded batch get the values they get alone."""
    from restmcts.bootstrap.arith import prm_values
    from restmcts.checkpoints import load_prm, load_tokenizer

    prm, tok = load_prm(str(built / "prm")), load_tokenizer(str(built / "prm"))
    texts = ["Start with 3. Add 4. What is the result?\n3 + 4 = 7\n",
             "Start with 3. Add 4. What is the result?\n3 + 4 = 9\nThe answer is 9\n",
             "Start with 12. Multiply by 3. Subtract 5. What is the result?\n"]
    batched = prm_values(prm, tok, texts, batch_size=3)
    alone = [prm_values(prm, tok, [t], batch_size=1)[0] for t in texts]
    assert batched == pytest.approx(alone, abs=1e-5)
    assert len(set(round(v, 6) for v in batched)) == 3, "different prefixes get different values"


def test_report_has_every_field(built):
    from restmcts.bootstrap.arith import BootstrapReport

    report = json.loads((built / "bootstrap.json").read_text())
    assert set(report) == {f.name for f in dataclasses.fields(BootstrapReport)}
    assert set(report["timings_s"]) == {"sft", "mc_labels", "train_prm", "evaluate", "save", "total"}
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


def test_sft_rows_mask_the_prompt_and_end_with_eos():
    from restmcts.bootstrap.arith import encode_sft
    from restmcts.bootstrap.tiny import build_arith_tokenizer
    from restmcts.prompt import PromptFormat
    from restmcts.tasks.arith import Problem

    tok, fmt = build_arith_tokenizer(), PromptFormat()
    p = Problem(7, (("+", 5), ("*", 3)))
    [(ids, n_prompt)] = encode_sft(tok, fmt, [p])
    assert tok.decode(ids[:n_prompt]) == fmt.prompt(p.text)
    assert tok.decode(ids[n_prompt:-1]) == "7 + 5 = 12\n12 * 3 = 36\nThe answer is 36\n"
    assert ids[-1] == tok.eos_token_id


def test_auroc_and_step_parsing():
    from restmcts.bootstrap.arith import to_steps
    from restmcts.evaluation.stats import auroc

    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9], [True, True, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([0.3, 0.4], [True, True]) == 0.5
    assert to_steps("1 + 2 = 3\nThe answer is 3\n5 + 5", "\n") == ["1 + 2 = 3", "The answer is 3"]
    assert to_steps("1 + 2 = 3\n\n4 ", "\n") == ["1 + 2 = 3", "4 "]
