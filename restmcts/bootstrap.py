"""Building the embedded default from nothing: a tiny policy and an initial PRM on arith.

    report = run_bootstrap(cfg, "runs/bootstrap")   # writes policy/, prm/, bootstrap.json

Three timed phases, all on CPU, all seeded from `cfg.bootstrap.seed`:
1. sft        a random tiny Llama learns to write arith solutions: supervised fine-tuning on the
              task's own step-by-step solutions, loss on the solution tokens (and the closing EOS)
              only. It is stopped early on purpose: the policy should be right often but not
              always, and wrong through single-step arithmetic slips that a PRM can learn to spot.
2. mc_labels  Math-Shepherd-style value labels for `D_V0` (ALGORITHM.md, Self-training): for one
              sampled solution per question, every prefix `p_k` gets `prm_rollouts` completions from
              the policy, and its label is the fraction that reach the gold answer. A prefix that
              already states an answer is labelled by checking it.
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
import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from restmcts.config import BootstrapConfig, Config
from restmcts.models import build_arith_tokenizer, build_tiny_models, save
from restmcts.prompt import PromptFormat
from restmcts.tasks.arith import (
    ArithTask,
    Problem,
    apply,
    check_answer,
    extract_answer,
    states_answer,
    step_labels,
)


@dataclass(frozen=True)
class ValueSample:
    """One Monte Carlo label: the value of partial solution `steps` for `question`."""

    question: str
    steps: tuple[str, ...]
    value: float  # fraction of rollouts from this prefix that reach the gold answer, in [0, 1]


@dataclass
class BootstrapReport:
    """What bootstrap.json holds: how the models were built and how good they start."""

    seed: int
    threads: int
    params: dict[str, int]  # policy / prm parameter counts
    timings_s: dict[str, float] = field(default_factory=dict)  # phase -> seconds, and "total"
    sft_examples: int = 0
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
    sft_problems, mc_problems = split_train(task.problems("train"), b)
    tok = build_arith_tokenizer()
    fmt = PromptFormat.from_config(cfg.data)
    policy, prm = build_tiny_models(tok, seed=b.seed, hidden_size=b.hidden_size, num_layers=b.num_layers,
                                    num_heads=b.num_heads, max_position=b.max_position)
    report = BootstrapReport(seed=b.seed, threads=torch.get_num_threads(),
                             params={"policy": num_params(policy), "prm": num_params(prm)})
    start = time.perf_counter()

    with _timed(report, "sft"):
        losses = train_policy(policy, encode_sft(tok, fmt, sft_problems), b, tok.pad_token_id)
        report.sft_examples, report.sft_final_loss = len(sft_problems), _tail_mean(losses)
    with _timed(report, "mc_labels"):
        samples = mc_value_samples(policy, tok, fmt, mc_problems, b)
        report.prm_questions, report.prm_samples = len(mc_problems), len(samples)
        report.prm_mean_label = sum(s.value for s in samples) / max(1, len(samples))
    with _timed(report, "train_prm"):
        prm.model.load_state_dict(policy.model.state_dict())
        report.prm_final_loss = _tail_mean(train_prm(prm, tok, fmt, samples, b))
    with _timed(report, "evaluate"):
        evaluate(report, policy, prm, tok, fmt, task.problems("test"), cfg)
    with _timed(report, "save"):
        save(policy, tok, out / "policy")
        save(prm, tok, out / "prm")
    report.timings_s["total"] = round(time.perf_counter() - start, 2)
    (out / "bootstrap.json").write_text(report.to_json() + "\n")
    return report


def split_train(train: Sequence[Problem], b: BootstrapConfig) -> tuple[list[Problem], list[Problem]]:
    """(SFT problems, Monte Carlo label problems) from the end of the train split, disjoint."""
    need = b.sft_examples + b.prm_questions
    if need > len(train):
        raise ValueError(
            f"bootstrap.sft_examples + bootstrap.prm_questions = {need} but the train split has "
            f"{len(train)} questions; raise data.arith_train_size or lower those two"
        )
    sft = list(train[len(train) - b.sft_examples:])
    mc = list(train[len(train) - need: len(train) - b.sft_examples])
    return sft, mc


# --------------------------------------------------------------------------- policy SFT


def encode_sft(tok: Any, fmt: PromptFormat, problems: Sequence[Problem]) -> list[tuple[list[int], int]]:
    """(token ids of prompt + solution + EOS, number of prompt tokens) for each problem."""
    rows = []
    for p in problems:
        prompt = _ids(tok, fmt.prompt(p.text))
        solution = _ids(tok, fmt.solution(p.solution())) + [tok.eos_token_id]
        rows.append((prompt + solution, len(prompt)))
    return rows


def train_policy(policy: Any, rows: Sequence[tuple[list[int], int]], b: BootstrapConfig,
                 pad_id: int) -> list[float]:
    """SFT with the loss on solution tokens only; returns the loss of every step."""
    def loss_fn(batch: Sequence[tuple[list[int], int]]) -> torch.Tensor:
        ids, mask = _pad_right([r[0] for r in batch], pad_id)
        labels = ids.masked_fill(mask == 0, -100)
        for i, (_, n_prompt) in enumerate(batch):
            labels[i, :n_prompt] = -100
        return policy(input_ids=ids, attention_mask=mask, labels=labels).loss

    return _train(policy, rows, loss_fn, b.sft_steps, b.sft_batch_size, b.sft_lr, _seed(b.seed, "sft"))


# --------------------------------------------------------------------------- PRM


def mc_value_samples(policy: Any, tok: Any, fmt: PromptFormat, problems: Sequence[Problem],
                     b: BootstrapConfig) -> list[ValueSample]:
    """Math-Shepherd labels: each prefix of one sampled solution per problem, valued by rollouts."""
    texts = generate(policy, tok, [fmt.prompt(p.text) for p in problems], b.temperature,
                     b.max_new_tokens, _seed(b.seed, "mc-solutions"), b.gen_batch_size)
    prefixes = [(p, tuple(steps[:k])) for p, t in zip(problems, texts, strict=True)
                for steps in [to_steps(t, fmt.delimiter)] for k in range(1, len(steps) + 1)]
    open_ = [(p, s) for p, s in prefixes if not states_answer(s[-1])]
    open_.sort(key=lambda ps: len(ps[0].ops) - len(ps[1]))  # similar rollout lengths share a batch
    prompts = [fmt.render(p.text, s) for p, s in open_ for _ in range(b.prm_rollouts)]
    rollouts = generate(policy, tok, prompts, b.temperature, b.max_new_tokens,
                        _seed(b.seed, "mc-rollouts"), b.gen_batch_size)
    wins: dict[tuple[str, tuple[str, ...]], float] = {}
    for i, (p, s) in enumerate(open_):
        done = rollouts[i * b.prm_rollouts:(i + 1) * b.prm_rollouts]
        wins[(p.text, s)] = sum(is_correct(p, list(s) + to_steps(c, fmt.delimiter)) for c in done) / len(done)
    return [ValueSample(p.text, s, wins.get((p.text, s), float(is_correct(p, s)))) for p, s in prefixes]


def train_prm(prm: Any, tok: Any, fmt: PromptFormat, samples: Sequence[ValueSample],
              b: BootstrapConfig) -> list[float]:
    """MSE between sigmoid(PRM logit) at the prefix's last token and the sample's value."""
    rows = [(_ids(tok, fmt.render(s.question, s.steps)), s.value) for s in samples]

    def loss_fn(batch: Sequence[tuple[list[int], float]]) -> torch.Tensor:
        ids, mask = _pad_right([r[0] for r in batch], tok.pad_token_id)
        values = torch.sigmoid(prm(input_ids=ids, attention_mask=mask).logits[:, 0])
        return torch.nn.functional.mse_loss(values, torch.tensor([r[1] for r in batch]))

    return _train(prm, rows, loss_fn, b.prm_steps, b.prm_batch_size, b.prm_lr, _seed(b.seed, "prm"))


@torch.no_grad()
def prm_values(prm: Any, tok: Any, texts: Sequence[str], batch_size: int) -> list[float]:
    """sigmoid(PRM logit) for each rendered (question, prefix) text."""
    prm.eval()
    values: list[float] = []
    for start in range(0, len(texts), batch_size):
        ids, mask = _pad_right([_ids(tok, t) for t in texts[start:start + batch_size]], tok.pad_token_id)
        values += torch.sigmoid(prm(input_ids=ids, attention_mask=mask).logits[:, 0]).tolist()
    return values


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
                     _seed(b.seed, "eval"), b.gen_batch_size)
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


def error_kinds(wrong: Sequence[tuple[Problem, Sequence[str]]]) -> dict[str, int]:
    """Count wrong solutions by their first wrong step: an arithmetic slip (`result`), a wrongly
    copied value or operation (`operand`), an unparseable step (`format`), a wrong final answer
    line (`answer`), or a solution that ends early or runs on (`length`)."""
    counts: dict[str, int] = {}
    for p, steps in wrong:
        kind = _first_error_kind(p, steps)
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


_STEP = re.compile(r"^(\d+) ([+\-*]) (\d+) = (-?\d+)$")


def _first_error_kind(p: Problem, steps: Sequence[str]) -> str:
    labels = step_labels(p, steps)
    if all(labels):
        return "length"
    k = labels.index(False)
    if k >= len(p.ops):
        return "answer" if k == len(p.ops) else "length"
    m = _STEP.match(steps[k].strip())
    if m is None:
        return "answer" if states_answer(steps[k]) else "format"
    value = p.start
    for sym, x in p.ops[:k]:
        value = apply(value, sym, x)
    same_inputs = (int(m.group(1)), m.group(2), int(m.group(3))) == (value, *p.ops[k])
    return "result" if same_inputs else "operand"


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count half); 0.5 when one class is absent."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return 0.5
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    pos_rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (pos_rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


# --------------------------------------------------------------------------- generation


@torch.no_grad()
def generate(model: Any, tok: Any, prompts: Sequence[str], temperature: float, max_new_tokens: int,
             seed: int, batch_size: int) -> list[str]:
    """One completion per prompt (greedy when temperature is 0), decoded without special tokens.

    Batches are left-padded; batch `i` samples under torch seed `seed + i`, so the output
    depends only on the prompts, the seed and the batch size."""
    model.eval()
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} \
        if temperature > 0 else {"do_sample": False}
    texts: list[str] = []
    for i, start in enumerate(range(0, len(prompts), batch_size)):
        enc = tok(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                  padding_side="left", add_special_tokens=False)
        torch.manual_seed(seed + i)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, **sampling)
        texts += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return texts


def to_steps(text: str, delimiter: str) -> list[str]:
    """Generated text as steps, cut after the first step that states an answer."""
    steps = []
    for step in text.split(delimiter):
        if not step.strip():
            continue
        steps.append(step)
        if states_answer(step):
            break
    return steps


def is_correct(p: Problem, steps: Sequence[str]) -> bool:
    """The solution's final answer, read as the arith task reads it, equals the gold answer."""
    return check_answer(extract_answer(steps), str(p.answer))


# --------------------------------------------------------------------------- helpers


def _train(model: Any, rows: Sequence[Any], loss_fn: Any, steps: int, batch_size: int, lr: float,
           seed: int) -> list[float]:
    """AdamW with linear warmup and cosine decay to 10%; batches walk seeded epoch permutations."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, _cosine(s, steps)))
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    losses = []
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(len(rows), generator=gen).tolist()
        batch, order = [rows[i] for i in order[:batch_size]], order[batch_size:]
        loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _cosine(step: int, total: int) -> float:
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


def _pad_right(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


def _ids(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _seed(seed: int, phase: str) -> int:
    """A stable per-phase seed derived from the run seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{phase}".encode()).digest()[:4], "little")


def num_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _mean(xs: Sequence[float | bool]) -> float:
    return round(sum(xs) / len(xs), 4) if xs else 0.0


def _tail_mean(losses: Sequence[float], n: int = 20) -> float:
    tail = losses[-n:]
    return round(sum(tail) / len(tail), 5) if tail else 0.0


class _timed:
    """Adds the block's wall time to `report.timings_s[name]` and prints a progress line."""

    def __init__(self, report: BootstrapReport, name: str):
        self.report, self.name = report, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.timings_s[self.name] = round(time.perf_counter() - self.start, 2)
        print(f"[bootstrap] {self.name}: {self.report.timings_s[self.name]:.1f}s", flush=True)
