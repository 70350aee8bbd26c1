"""Building the embedded default from nothing: a tiny policy and an initial PRM on arith.

    report = run_bootstrap(cfg, "runs/bootstrap")   # writes policy/, prm/, bootstrap.json

Three timed phases, all on CPU, all seeded from `cfg.bootstrap.seed`:
1. sft        a random tiny Llama learns to write arith solutions: supervised fine-tuning on the
              task's own step-by-step solutions, loss on the solution tokens (and the closing EOS)
              only. The embedded default teaches it easy questions (2 and 3 operations) and shows
              it only 30 of the 4-operation kind the loop searches and the test asks
              (`bootstrap.max_ops`, `longer_examples`): it starts right about 4 times in 10 on
              those, wrong through slips on the longer chains, and self-training has to close the
              gap from its own verified searches.
2. mc_labels  Math-Shepherd-style value labels for `D_V0` (ALGORITHM.md, Self-training): for one
              sampled solution per question, every prefix `p_k` gets `prm_rollouts` completions from
              the policy, and its label is the fraction that reach the gold answer. A prefix that
              already states an answer is labelled by checking it (restmcts/bootstrap/labels.py, shared
              with jobs/prepare_model.py).
3. train_prm  the PRM (the SFT'd backbone plus a one-label head, read through a sigmoid) regresses
              those labels with MSE.
Then `evaluate` measures what the self-training loop starts from: greedy accuracy on the test
split, pass@k of temperature samples, the PRM's per-step AUROC against the ground-truth
`arith.step_labels`, and PRM best-of-k accuracy.

Simplifications, because the models are tiny and everything runs in one process: plain torch
AdamW loops instead of the learners, and `model.generate` with left padding instead of the
inference servers. Text is tokenized without special tokens, exactly as
`PromptFormat.render` writes it; the policy ends a solution with EOS after "The answer is N\\n".
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from restmcts.bootstrap.labels import (
    ValueSample,
    encode,
    generate,
    num_params,
    pad_right,
    phase_seed,
    prm_values,
    tail_mean,
    timed,
    train_prm,
    train_steps,
)
from restmcts.bootstrap.labels import mc_value_samples as _mc_value_samples
from restmcts.bootstrap.labels import to_steps as _to_steps
from restmcts.bootstrap.tiny import build_arith_tokenizer, build_tiny_models
from restmcts.checkpoints import save
from restmcts.config import BootstrapConfig, Config, ConfigError, DataConfig
from restmcts.evaluation.stats import auroc
from restmcts.prompt import PromptFormat
from restmcts.storage import write_text
from restmcts.tasks.arith import (
    ArithTask,
    Problem,
    check_answer,
    error_kinds,
    extract_answer,
    states_answer,
    step_labels,
)

_ARITH = ArithTask(DataConfig())  # answer rules only (is_terminal, extract_answer, check)


@dataclass
class BootstrapReport:
    """What bootstrap.json holds: how the models were built and how good they start."""

    seed: int
    threads: int
    params: dict[str, int]  # policy / prm parameter counts
    timings_s: dict[str, float] = field(default_factory=dict)  # phase -> seconds, and "total"
    sft_examples: int = 0
    sft_ops: dict[str, int] = field(default_factory=dict)  # SFT examples by number of operations
    sft_final_loss: float = 0.0  # mean of the last 20 steps (per solution token)
    prm_questions: int = 0
    prm_samples: int = 0  # labelled prefixes
    prm_mean_label: float = 0.0
    prm_final_loss: float = 0.0  # MSE, mean of the last 20 steps
    test_questions: int = 0
    greedy_accuracy: float = 0.0  # iteration-0 CoT accuracy on the whole test split
    greedy_accuracy_num_test: float = 0.0  # on the first data.num_test (what the loop evaluates)
    greedy_errors: dict[str, int] = field(default_factory=dict)  # first wrong step of wrong answers, by kind
    temperature: float = 0.0
    k: int = 0
    sample_accuracy: float = 0.0  # mean accuracy of single temperature samples
    pass_at_k: float = 0.0  # some sample of k is right
    prm_best_of_k_accuracy: float = 0.0  # the sample with the highest min-step PRM value is right
    prm_auroc: float = 0.0  # per-step PRM value vs arith.step_labels on the test samples
    prm_eval_steps: int = 0
    prm_eval_positive: float = 0.0  # fraction of evaluated steps that are right

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


# --------------------------------------------------------------------------- the job


def run_bootstrap(cfg: Config, out: str | Path) -> BootstrapReport:
    """Build, train, evaluate and save the embedded default's policy and PRM under `out`."""
    if cfg.data.task != "arith":
        raise ValueError(f"data.task: bootstrap builds the arith default only; got {cfg.data.task!r}")
    b, out = cfg.bootstrap, Path(out)
    task = ArithTask(cfg.data, seed=cfg.loop.seed)
    sft_problems, mc_problems = bootstrap_problems(cfg, task.problems("train"))
    tok = build_arith_tokenizer()
    fmt = PromptFormat.from_config(cfg.data)
    policy, prm = build_tiny_models(tok, seed=b.seed, hidden_size=b.hidden_size, num_layers=b.num_layers,
                                    num_heads=b.num_heads, max_position=b.max_position)
    report = BootstrapReport(seed=b.seed, threads=torch.get_num_threads(),
                             params={"policy": num_params(policy), "prm": num_params(prm)})
    start = time.perf_counter()

    with timed(report.timings_s, "sft", "bootstrap"):
        losses = train_policy(policy, encode_sft(tok, fmt, sft_problems), b, tok.pad_token_id)
        report.sft_examples, report.sft_final_loss = len(sft_problems), tail_mean(losses)
        report.sft_ops = {str(n): sum(len(p.ops) == n for p in sft_problems)
                          for n in sorted({len(p.ops) for p in sft_problems})}
    with timed(report.timings_s, "mc_labels", "bootstrap"):
        samples = mc_value_samples(policy, tok, fmt, mc_problems, b)
        report.prm_questions, report.prm_samples = len(mc_problems), len(samples)
        report.prm_mean_label = sum(s.value for s in samples) / max(1, len(samples))
    with timed(report.timings_s, "train_prm", "bootstrap"):
        prm.model.load_state_dict(policy.model.state_dict())
        report.prm_final_loss = tail_mean(train_prm(prm, tok, fmt, samples, b))
    with timed(report.timings_s, "evaluate", "bootstrap"):
        evaluate(report, policy, prm, tok, fmt, task.problems("test"), cfg)
    with timed(report.timings_s, "save", "bootstrap"):
        save(policy, tok, out / "policy")
        save(prm, tok, out / "prm")
    report.timings_s["total"] = round(time.perf_counter() - start, 2)
    write_text(str(out / "bootstrap.json"), report.to_json() + "\n")  # atomic: a kill leaves no half file
    return report


def bootstrap_problems(cfg: Config, train: Sequence[Problem]) -> tuple[list[Problem], list[Problem]]:
    """(SFT problems, Monte Carlo label problems): disjoint, and never a test or early search question.

    They come from the end of the train split `train`, or with `bootstrap.max_ops` from the
    bootstrap's own easier questions plus `bootstrap.longer_examples` from the end of `train`.
    """
    b = cfg.bootstrap
    if not b.max_ops:
        return split_train(train, b.sft_examples, b.prm_questions, "the train split")
    if b.max_ops >= cfg.data.arith_min_ops:
        raise ConfigError(f"bootstrap.max_ops: must be below data.arith_min_ops ({cfg.data.arith_min_ops}) "
                          f"so that no bootstrap question is also a search question; lower it, raise "
                          f"data.arith_min_ops, or set bootstrap.max_ops=0 to learn from the train split")
    easy = own_problems(cfg)
    longer = split_train(train, b.longer_examples, 0, "the train split")[0] if b.longer_examples else []
    sft, mc = split_train(easy, b.sft_examples - len(longer), b.prm_questions,
                          f"the bootstrap's {b.min_ops}..{b.max_ops}-operation questions")
    return sft + longer, mc


def own_problems(cfg: Config) -> list[Problem]:
    """The bootstrap's own easier questions (`bootstrap.min_ops`..`max_ops`; none when max_ops is 0).
    Evaluation excludes them from its held-out splits."""
    b = cfg.bootstrap
    if not b.max_ops:
        return []
    easy_data = dataclasses.replace(cfg.data, arith_min_ops=b.min_ops, arith_max_ops=b.max_ops,
                                    arith_train_size=b.sft_examples + b.prm_questions)
    return ArithTask(easy_data, seed=cfg.loop.seed).problems("train")


def split_train(pool: Sequence[Problem], sft_examples: int, prm_questions: int,
                name: str) -> tuple[list[Problem], list[Problem]]:
    """The last `sft_examples` of `pool` and the `prm_questions` before them."""
    need = sft_examples + prm_questions
    if need > len(pool):
        raise ValueError(
            f"bootstrap: needs {need} questions from {name}, which has {len(pool)}; raise data.arith_train_size "
            f"or lower bootstrap.sft_examples, bootstrap.prm_questions or bootstrap.longer_examples"
        )
    sft = list(pool[len(pool) - sft_examples:]) if sft_examples else []
    mc = list(pool[len(pool) - need: len(pool) - sft_examples])
    return sft, mc


# --------------------------------------------------------------------------- policy SFT


def encode_sft(tok: Any, fmt: PromptFormat, problems: Sequence[Problem]) -> list[tuple[list[int], int]]:
    """(token ids of prompt + solution + EOS, number of prompt tokens) for each problem."""
    rows = []
    for p in problems:
        prompt = encode(tok, fmt.prompt(p.text))
        solution = encode(tok, fmt.solution(p.solution())) + [tok.eos_token_id]
        rows.append((prompt + solution, len(prompt)))
    return rows


def train_policy(policy: Any, rows: Sequence[tuple[list[int], int]], b: BootstrapConfig,
                 pad_id: int) -> list[float]:
    """SFT with the loss on solution tokens only; returns the loss of every step."""
    def loss_fn(batch: Sequence[tuple[list[int], int]]) -> torch.Tensor:
        ids, mask = pad_right([r[0] for r in batch], pad_id)
        labels = ids.masked_fill(mask == 0, -100)
        for i, (_, n_prompt) in enumerate(batch):
            labels[i, :n_prompt] = -100
        return policy(input_ids=ids, attention_mask=mask, labels=labels).loss

    return train_steps(policy, rows, loss_fn, b.sft_steps, b.sft_batch_size, b.sft_lr, phase_seed(b.seed, "sft"))


# --------------------------------------------------------------------------- PRM


def mc_value_samples(policy: Any, tok: Any, fmt: PromptFormat, problems: Sequence[Problem],
                     b: BootstrapConfig) -> list[ValueSample]:
    """Math-Shepherd labels: each prefix of one sampled solution per problem, valued by rollouts."""
    return _mc_value_samples(policy, tok, fmt, [(p.text, str(p.answer)) for p in problems], _ARITH, b)


# --------------------------------------------------------------------------- evaluation


def evaluate(report: BootstrapReport, policy: Any, prm: Any, tok: Any, fmt: PromptFormat,
             problems: Sequence[Problem], cfg: Config) -> None:
    """Fill the report's accuracy and PRM-quality fields from the test split."""
    b, k = cfg.bootstrap, cfg.bootstrap.eval_samples
    prompts = [fmt.prompt(p.text) for p in problems]
    greedy = [to_steps(t, fmt.delimiter) for t in generate(policy, tok, prompts, 0.0, b.max_new_tokens,
                                                            0, b.gen_batch_size)]
    right = [is_correct(p, s) for p, s in zip(problems, greedy, strict=True)]
    n_test = cfg.data.num_test or len(problems)
    report.test_questions = len(problems)
    report.greedy_accuracy = _mean(right)
    report.greedy_accuracy_num_test = _mean(right[:n_test])
    report.greedy_errors = error_kinds([(p, s) for p, s, r in zip(problems, greedy, right, strict=True) if not r])

    texts = generate(policy, tok, [q for q in prompts for _ in range(k)], b.temperature, b.max_new_tokens,
                     phase_seed(b.seed, "eval"), b.gen_batch_size)
    samples = [to_steps(t, fmt.delimiter) for t in texts]
    owners = [p for p in problems for _ in range(k)]
    sample_right = [is_correct(p, s) for p, s in zip(owners, samples, strict=True)]
    prefixes = [(i, j) for i, s in enumerate(samples) for j in range(1, len(s) + 1)]
    scores = prm_values(prm, tok, [fmt.render(owners[i].text, samples[i][:j]) for i, j in prefixes],
                        b.gen_batch_size)
    labels = [step_labels(owners[i], samples[i])[j - 1] for i, j in prefixes]
    min_value = [1.0] * len(samples)
    for (i, _), v in zip(prefixes, scores, strict=True):
        min_value[i] = min(min_value[i], v)
    best = [max(range(q * k, (q + 1) * k), key=lambda i: min_value[i]) for q in range(len(problems))]

    report.temperature, report.k = b.temperature, k
    report.sample_accuracy = _mean(sample_right)
    report.pass_at_k = _mean([any(sample_right[q * k:(q + 1) * k]) for q in range(len(problems))])
    report.prm_best_of_k_accuracy = _mean([sample_right[i] for i in best])
    report.prm_auroc = round(auroc(scores, labels), 4)
    report.prm_eval_steps = len(labels)
    report.prm_eval_positive = _mean(labels)


# --------------------------------------------------------------------------- generation


def to_steps(text: str, delimiter: str) -> list[str]:
    """Generated text as steps, cut after the first step that states an answer."""
    return _to_steps(text, delimiter, states_answer)


def is_correct(p: Problem, steps: Sequence[str]) -> bool:
    """The solution's final answer, read as the arith task reads it, equals the gold answer."""
    return check_answer(extract_answer(steps), str(p.answer))


# --------------------------------------------------------------------------- helpers


def _mean(xs: Sequence[float | bool]) -> float:
    return round(sum(xs) / len(xs), 4) if xs else 0.0
