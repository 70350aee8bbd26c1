"""DeepSpeed learners on CPU: policy SFT, PRM regression, sharding, checkpoints, bad inputs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from restmcts import replay
from restmcts.checkpoints import read_weights
from restmcts.config import Config, LearnersConfig, load_config
from restmcts.learners import LearnerGroup
from restmcts.learners.engine import IGNORE_INDEX, ds_config, epoch_steps, scheduled_lr, shard
from restmcts.learners.policy import PolicyLearner
from restmcts.prompt import PromptFormat
from restmcts.replay import Trace, ValueRecord
from restmcts.weights import Manifest

SOLVED = [
    ("Start with 7. Add 5. What is the result?", ("7 + 5 = 12", "The answer is 12")),
    ("Start with 3. Multiply by 4. What is the result?", ("3 * 4 = 12", "The answer is 12")),
    ("Start with 9. Subtract 2. Add 6. What is the result?", ("9 - 2 = 7", "7 + 6 = 13", "The answer is 13")),
    ("Start with 15. Add 8. What is the result?", ("15 + 8 = 23", "The answer is 23")),
    ("Start with 6. Multiply by 3. Subtract 5. What is the result?", ("6 * 3 = 18", "18 - 5 = 13",
                                                                      "The answer is 13")),
]


def trace(i: int, question: str, steps: tuple[str, ...], correct: bool = True) -> Trace:
    return Trace(question_id=f"q{i}", question=question, steps=steps, answer=steps[-1].split()[-1],
                 correct=correct, tokens=10, strategy="mcts_star", iteration=1)


def write_traces(path, n: int = 4) -> str:
    rows = [trace(i, q, s) for i, (q, s) in enumerate(SOLVED[:n])]
    rows.append(trace(99, SOLVED[0][0], ("7 + 5 = 13", "The answer is 13"), correct=False))
    replay.write_records(rows, Trace, str(path))
    return str(path)


def write_values(path, values: list[float] | None = None) -> str:
    """Prefixes of the solved questions; v high on correct prefixes, low on a wrong one."""
    rows = []
    for i, (q, steps) in enumerate(SOLVED[:4]):
        for k in range(1, len(steps) + 1):
            rows.append(ValueRecord(f"q{i}", q, steps[:k], 0.9, len(steps) - k, True, 1))
        rows.append(ValueRecord(f"q{i}", q, ("1 + 1 = 3",), 0.1, 1, False, 1))
    if values is not None:
        rows = [dataclasses.replace(r, value=v) for r, v in zip(rows, values, strict=True)]
    replay.write_records(rows, ValueRecord, str(path))
    return str(path)


def config(*overrides: str) -> Config:
    base = ["learners.num_learners=0", "learners.micro_batch_size=4", "learners.max_seq_len=64"]
    return load_config(None, base + list(overrides))


def train(cfg: Config, role: str, init: str, data: list[str], out: str):
    group = LearnerGroup(cfg, role)
    try:
        return group.train(init, data, out), exported_weights(group)
    finally:
        group.shutdown()


def exported_weights(group: LearnerGroup) -> dict:
    """Copies of the trained weights as the servers receive them (the object-store path's dict
    for learner actors; the live tensors in-process)."""
    if group.local is not None:
        with group.local.live_weights() as named:
            return {name: t.clone() for name, t in named}
    import ray

    from restmcts.weights.group import unpack

    manifest = group.manifest(0, bucket_mb=1)
    refs = group.put_weights(manifest)
    return {name: t.clone() for ref, bucket in zip(refs, manifest.buckets(), strict=True)
            for name, t in unpack(torch.from_numpy(ray.get(ref).copy()), bucket)}


def assert_same_weights(exported: dict, path: str) -> None:
    saved = read_weights(path)
    assert sorted(exported) == sorted(saved)
    for name, tensor in saved.items():
        assert torch.equal(exported[name], tensor), name


# --------------------------------------------------------------------------- plumbing units


def test_shard_gives_equal_slices_padded_by_repeats():
    slices = shard(list(range(5)), world_size=2, seed=0)
    assert [len(s) for s in slices] == [3, 3]
    flat = slices[0] + slices[1]
    assert sorted(set(flat)) == [0, 1, 2, 3, 4]  # every row is somewhere
    assert len(flat) - len(set(flat)) == 1  # one repeat fills the last place
    assert shard([], 3, seed=0) == [[], [], []]
    assert shard(list(range(5)), 2, seed=0) == slices  # deterministic
    assert [len(s) for s in shard([1], 2, seed=0, min_per_rank=3)] == [3, 3]


@pytest.mark.parametrize("count,micro,gas", [(10, 4, 1), (10, 4, 2), (3, 16, 3), (33, 8, 4)])
def test_epoch_steps_cover_rows_in_whole_accumulation_windows(count, micro, gas):
    steps = epoch_steps(count, epoch=1, rank=0, seed=0, micro_batch_size=micro, grad_accum=gas)
    assert all(len(step) == gas for step in steps)
    parts = [p for step in steps for p in step]
    assert all(1 <= len(p) <= micro for p in parts)
    assert sorted(np.concatenate(parts).tolist()) == list(range(count))
    again = epoch_steps(count, epoch=1, rank=0, seed=0, micro_batch_size=micro, grad_accum=gas)
    other = epoch_steps(count, epoch=2, rank=0, seed=0, micro_batch_size=micro, grad_accum=gas)
    flat = lambda s: np.concatenate([p for step in s for p in step]).tolist()  # noqa: E731
    assert flat(steps) == flat(again)
    assert count < 4 or flat(steps) != flat(other)  # a new order every epoch


def test_ds_config_follows_learners_config():
    lc = LearnersConfig(zero_stage=2, precision="bf16", micro_batch_size=8, grad_accum=2, weight_decay=0.1)
    ds = ds_config(lc, lr=1e-3)
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert ds["train_micro_batch_size_per_gpu"] == 8 and ds["gradient_accumulation_steps"] == 2
    assert ds["optimizer"] == {"type": "AdamW", "params": {"lr": 1e-3, "weight_decay": 0.1, "torch_adam": True}}


def test_scheduled_lr_warms_up_then_decays():
    warm = LearnersConfig(lr_schedule="warmup_linear", warmup_ratio=0.3)
    lrs = [scheduled_lr(warm, 1.0, s, 10) for s in range(10)]
    assert lrs == pytest.approx([1 / 3, 2 / 3, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    assert [scheduled_lr(LearnersConfig(), 1e-3, s, 10) for s in (0, 9)] == [1e-3, 1e-3]
    assert scheduled_lr(warm, 1.0, 0, 1) == 1.0  # a one-step phase still takes a step


def test_warmup_linear_schedule_rises_then_decays_in_process(tiny_ckpt, tmp_path):
    data = write_traces(tmp_path / "traces.parquet")
    cfg = config("learners.policy_epochs=10", "learners.policy_lr=1.0e-3", "learners.lr_schedule=warmup_linear",
                 "learners.warmup_ratio=0.3")
    used: list[float] = []  # the learning rate in the optimizer's param_groups at each optimizer step

    def record(optimizer, args, kwargs):
        used.append(optimizer.param_groups[0]["lr"])

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    hook = register_optimizer_step_pre_hook(record)
    try:
        result, _ = train(cfg, "policy", str(tiny_ckpt / "policy"), [data], str(tmp_path / "out"))
        steps = len(used)
        constant, _ = train(config("learners.policy_epochs=3"), "policy", str(tiny_ckpt / "policy"), [data],
                            str(tmp_path / "const"))
    finally:
        hook.remove()
    rising_then_falling = [1 / 3, 2 / 3, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8]
    assert used[:steps] == pytest.approx([1e-3 * f for f in rising_then_falling])
    assert [m.lr for m in result.history] == pytest.approx(used[:steps])
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    assert used[steps:] == pytest.approx([config().learners.policy_lr] * 3)


def test_policy_labels_mask_the_prompt(tiny_ckpt):
    learner = PolicyLearner(config())
    learner.load_tokenizer(str(tiny_ckpt / "policy"))
    question, steps = SOLVED[2]
    example, cut = learner.encode(trace(0, question, steps))
    assert not cut
    fmt = PromptFormat()
    n_prompt = len(learner.tokenizer(fmt.prompt(question)).input_ids)
    batch = learner.collate([example, learner.encode(trace(1, *SOLVED[0]))[0]])
    labels, ids = batch.tensors["labels"][0], batch.tensors["input_ids"][0]
    assert (labels[:n_prompt] == IGNORE_INDEX).all()
    assert torch.equal(labels[n_prompt:], ids[n_prompt:])
    assert labels[-1].item() == learner.tokenizer.eos_token_id
    assert learner.tokenizer.decode(ids[n_prompt:-1].tolist()) == fmt.solution(steps)
    # the shorter row is padded: pad positions carry no loss and no attention
    short = batch.tensors["attention_mask"][1]
    assert (batch.tensors["labels"][1][short == 0] == IGNORE_INDEX).all()

    short_cfg = PolicyLearner(config("learners.max_seq_len=8"))
    short_cfg.load_tokenizer(str(tiny_ckpt / "policy"))
    cut_example, cut = short_cfg.encode(trace(0, question, steps))
    assert cut and len(cut_example.input_ids) == 8 == len(cut_example.labels)


# --------------------------------------------------------------------------- in-process training


def test_policy_sft_in_process_learns_the_traces(tiny_ckpt, tmp_path):
    data = write_traces(tmp_path / "traces.parquet")
    cfg = config("learners.policy_epochs=80", "learners.policy_lr=5.0e-3")
    out = str(tmp_path / "policy_out")
    result, exported = train(cfg, "policy", str(tiny_ckpt / "policy"), [data], out)

    assert result.samples == 4 and result.world_size == 1  # the incorrect row is left out
    assert result.steps == 80 and len(result.history) == 80
    assert result.epoch_losses[-1] < 0.2 * result.epoch_losses[0]
    assert result.samples_per_s > 0 and result.tokens_per_s > 0
    assert_same_weights(exported, out)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    fmt = PromptFormat()
    question, steps = SOLVED[2]
    ids = torch.tensor([tok(fmt.prompt(question)).input_ids])
    target = fmt.solution(steps)
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=len(tok(target).input_ids) + 1, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    assert tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True) == target


def prm_mse(path: str, records: list[ValueRecord]) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    assert model.config.num_labels == 1
    tok = AutoTokenizer.from_pretrained(path)
    fmt = PromptFormat()
    errors = []
    with torch.no_grad():
        for r in records:
            ids = torch.tensor([tok(fmt.render(r.question, r.steps)).input_ids])
            v = torch.sigmoid(model(input_ids=ids).logits[0, 0]).item()
            errors.append((v - r.value) ** 2)
    return float(np.mean(errors))


def test_prm_regression_in_process_moves_values_to_targets(tiny_ckpt, tmp_path):
    data = write_values(tmp_path / "values.parquet")
    records = replay.read_values(data)
    cfg = config("learners.prm_epochs=15", "learners.prm_lr=2.0e-3")
    out = str(tmp_path / "prm_out")
    result, exported = train(cfg, "prm", str(tiny_ckpt / "prm"), [data], out)

    assert result.samples == len(records) == 13
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    before, after = prm_mse(str(tiny_ckpt / "prm"), records), prm_mse(out, records)
    assert after < 0.5 * before, (before, after)
    assert_same_weights(exported, out)


@pytest.mark.parametrize("stage,precision", [(2, "fp32"), (3, "bf16")])
def test_zero_stages_run_in_process(tiny_ckpt, tmp_path, stage, precision):
    data = write_values(tmp_path / "values.parquet")
    cfg = config(f"learners.zero_stage={stage}", f"learners.precision={precision}", "learners.prm_epochs=2",
                 "learners.grad_accum=2")
    out = str(tmp_path / "prm_out")
    group = LearnerGroup(cfg, "prm")
    try:
        result, exported = group.train(str(tiny_ckpt / "prm"), [data], out), exported_weights(group)
        manifest = group.manifest(7, bucket_mb=1)
    finally:
        group.shutdown()
    # The manifest is read without gathering (ZeRO-3: each parameter's whole shape, not its shard)
    # and names exactly what a push sends, in order.
    assert manifest == Manifest.of(exported.items(), 7, bucket_mb=1)
    assert result.steps == 2 * 2  # 13 rows, micro 4 -> 4 micro-batches -> 2 windows of 2 per epoch
    assert all(math.isfinite(m.loss) for m in result.history)
    assert_same_weights(exported, out)
    init = read_weights(str(tiny_ckpt / "prm"))
    changed = [k for k in init if not torch.equal(init[k], exported[k])]
    assert "score.weight" in changed, "the optimizer stepped: the saved head differs from the init"


# --------------------------------------------------------------------------- bad inputs


def test_empty_replay_is_a_no_op_that_keeps_the_init_weights(tiny_ckpt, tmp_path):
    empty = tmp_path / "traces.parquet"
    replay.write_records([trace(0, *SOLVED[0], correct=False)], Trace, str(empty))  # no verified rows
    out = str(tmp_path / "policy_out")
    result, exported = train(config(), "policy", str(tiny_ckpt / "policy"), [str(empty)], out)
    assert result.samples == 0 and result.steps == 0 and result.final_loss is None
    init = read_weights(str(tiny_ckpt / "policy"))
    saved = read_weights(out)
    assert sorted(init) == sorted(saved) and all(torch.equal(init[k], saved[k]) for k in init)
    assert_same_weights(exported, out)


def test_nan_values_are_rejected_naming_the_file(tiny_ckpt, tmp_path):
    values = [0.5] * 13
    values[3] = float("nan")
    bad = write_values(tmp_path / "bad_values.parquet", values)
    group = LearnerGroup(config(), "prm")
    with pytest.raises(ValueError, match="bad_values.parquet.*row 3"):
        group.train(str(tiny_ckpt / "prm"), [bad], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_missing_init_and_replay_paths_name_what_is_missing(tiny_ckpt, tmp_path):
    data = write_traces(tmp_path / "traces.parquet")
    group = LearnerGroup(config(), "policy")
    with pytest.raises(FileNotFoundError, match="model.policy.*no_such_ckpt"):
        group.train(str(tmp_path / "no_such_ckpt"), [data], str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="model.prm"):
        LearnerGroup(config(), "prm").train(str(tmp_path / "nope"), [data], str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        group.train(str(tiny_ckpt / "policy"), [str(tmp_path / "missing.parquet")], str(tmp_path / "out"))


def test_bad_role_and_fp16_on_cpu_are_rejected():
    with pytest.raises(ValueError, match="valid roles: policy, prm"):
        LearnerGroup(config(), "value")  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="learners.precision"):
            LearnerGroup(config("learners.precision=fp16"), "policy")


# --------------------------------------------------------------------------- two learner actors


def test_two_learner_actors_form_one_world_and_stay_in_sync(ray_local, tiny_ckpt, tmp_path):
    data = write_traces(tmp_path / "traces.parquet", n=5)
    cfg = config("learners.num_learners=2", "learners.num_cpus=1", "learners.micro_batch_size=2",
                 "learners.policy_epochs=3", "learners.policy_lr=3.0e-3")
    out = str(tmp_path / "policy_out")
    group = LearnerGroup(cfg, "policy")
    try:
        assert len(group.actors) == 2
        result = group.train(str(tiny_ckpt / "policy"), [data], out)
        exported = exported_weights(group)
    finally:
        group.shutdown()

    assert result.world_size == 2 and result.samples == 5
    # 5 rows over 2 ranks: 3 each (one repeat), 2 micro-batches of <= 2 rows -> 2 steps per epoch
    assert result.steps == 3 * 2
    assert all(sum(m.samples for m in result.history if m.epoch == e) == 6 for e in range(3))
    assert len(result.weights_digests) == 2 and len(set(result.weights_digests)) == 1
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    assert_same_weights(exported, out)


def test_a_group_the_cluster_cannot_hold_fails_naming_the_keys(ray_local, monkeypatch):
    from ray.util import placement_group_table

    from restmcts.actors import runtime

    monkeypatch.setattr(runtime, "PLACEMENT_TIMEOUT_S", 1.0)
    live_before = sum(pg["state"] != "REMOVED" for pg in placement_group_table().values())
    with pytest.raises(RuntimeError, match=r"no room for 2 bundle\(s\) of \{'CPU': 64.0\}.*learners.num_cpus"):
        LearnerGroup(config("learners.num_learners=2", "learners.num_cpus=64"), "policy")
    assert sum(pg["state"] != "REMOVED" for pg in placement_group_table().values()) == live_before


def test_a_build_lock_left_by_a_killed_build_is_removed_and_a_fresh_one_kept(tmp_path, monkeypatch, capsys):
    """A process killed while DeepSpeed JIT-builds its comm op leaves a `lock` that would make every
    later learner wait forever; one older than any real build is removed, a young one is a build
    in progress and stays."""
    import os
    import time

    from restmcts.learners.engine import STALE_BUILD_LOCK_S, clear_stale_build_locks

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    stale, fresh = tmp_path / "deepspeed_shm_comm" / "lock", tmp_path / "deepspeed_other_op" / "lock"
    for lock in (stale, fresh):
        lock.parent.mkdir()
        lock.touch()
    old = time.time() - STALE_BUILD_LOCK_S - 60
    os.utime(stale, (old, old))
    clear_stale_build_locks()
    assert not stale.exists() and fresh.exists()
    assert "deepspeed_shm_comm/lock" in capsys.readouterr().err
