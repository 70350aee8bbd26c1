"""An initial PRM from Monte Carlo rollouts, in one process: generation, value labels, regression.

    samples = mc_value_samples(policy, tok, fmt, [(question, gold), ...], task, cfg.bootstrap)
    losses = train_prm(prm, tok, fmt, samples, cfg.bootstrap)

Math-Shepherd-style labels (ALGORITHM.md, Self-training, `D_V0`): for one sampled solution per
question, every prefix `p_k` gets `prm_rollouts` completions from the policy, and its label is
the fraction whose final answer the task's `check` accepts; a prefix that already ends the
solution is labelled by checking it. The PRM (a one-label sequence classifier read through a
sigmoid) regresses those labels with MSE. Task-generic: the task says where a solution ends
(`is_terminal`), reads its answer (`extract_answer`) and checks it (`check`). Used by
jobs/bootstrap.py (arith, tiny models) and jobs/prepare_model.py (a pretrained LLM on a real task).

Plain torch in one process rather than the inference servers and learners: `model.generate` with
left padding, and an AdamW loop. Text is tokenized without special tokens, exactly as
`PromptFormat.render` writes it (the chat template already holds the model's special tokens).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from restmcts.config import BootstrapConfig
from restmcts.progress import progress
from restmcts.prompt import PromptFormat
from restmcts.tasks import MessageEnds, Task


@dataclass(frozen=True)
class ValueSample:
    """One Monte Carlo label: the value of partial solution `steps` for `question`."""

    question: str
    steps: tuple[str, ...]
    value: float  # fraction of rollouts from this prefix that reach the gold answer, in [0, 1]


def mc_value_samples(policy: Any, tok: Any, fmt: PromptFormat, items: Sequence[tuple[str, str]],
                     task: Task, b: BootstrapConfig) -> list[ValueSample]:
    """Labels for each prefix of one sampled solution per (question, gold answer) item.

    A completion that ended at EOS ends its solution where it stops (MessageEnds), as in the search."""
    solutions = generate_ended(policy, tok, [fmt.prompt(q) for q, _ in items], b.temperature,
                               b.max_new_tokens, phase_seed(b.seed, "mc-solutions"), b.gen_batch_size,
                               what="solutions")

    def split(text: str, ended: bool) -> tuple[list[str], MessageEnds]:
        steps = to_steps(text, fmt.delimiter, task.is_terminal)
        return steps, MessageEnds(task, {tuple(steps)} if ended and steps else set())

    def correct(gold: str, steps: Sequence[str], answers: MessageEnds) -> bool:
        return task.check(answers.extract_answer(steps), gold)

    prefixes = [(q, g, tuple(steps[:k]), answers) for (q, g), (t, ended) in zip(items, solutions, strict=True)
                for steps, answers in [split(t, ended)] for k in range(1, len(steps) + 1)]
    open_ = [(q, g, s) for q, g, s, answers in prefixes if not answers.ends(s)]
    open_.sort(key=lambda qgs: -len(qgs[2]))  # similar rollout lengths share a batch
    prompts = [fmt.render(q, s) for q, _, s in open_ for _ in range(b.prm_rollouts)]
    rollouts = generate_ended(policy, tok, prompts, b.temperature, b.max_new_tokens,
                              phase_seed(b.seed, "mc-rollouts"), b.gen_batch_size, what="rollouts")
    wins: dict[tuple[str, tuple[str, ...]], float] = {}
    for i, (q, g, s) in enumerate(open_):
        done = [(list(s) + steps, answers) for text, ended in rollouts[i * b.prm_rollouts:(i + 1) * b.prm_rollouts]
                for steps, answers in [split(text, ended)]]
        wins[(q, s)] = sum(correct(g, steps, answers) for steps, answers in done) / len(done)
    return [ValueSample(q, s, wins.get((q, s), float(correct(g, s, answers)))) for q, g, s, answers in prefixes]


def train_prm(prm: Any, tok: Any, fmt: PromptFormat, samples: Sequence[ValueSample],
              b: BootstrapConfig) -> list[float]:
    """MSE between sigmoid(PRM logit) at the prefix's last token and the sample's value."""
    rows = [(encode(tok, fmt.render(s.question, s.steps)), s.value) for s in samples]

    def loss_fn(batch: Sequence[tuple[list[int], float]]) -> torch.Tensor:
        ids, mask = pad_right([r[0] for r in batch], tok.pad_token_id, prm.device)
        values = torch.sigmoid(prm(input_ids=ids, attention_mask=mask).logits[:, 0].float())
        return torch.nn.functional.mse_loss(values, torch.tensor([r[1] for r in batch], device=prm.device))

    return train_steps(prm, rows, loss_fn, b.prm_steps, b.prm_batch_size, b.prm_lr, phase_seed(b.seed, "prm"))


@torch.no_grad()
def prm_values(prm: Any, tok: Any, texts: Sequence[str], batch_size: int) -> list[float]:
    """sigmoid(PRM logit) for each rendered (question, prefix) text."""
    prm.eval()
    values: list[float] = []
    with progress(len(texts), phase_desc("PRM scores"), unit="prefixes") as bar:
        for start in range(0, len(texts), batch_size):
            ids, mask = pad_right([encode(tok, t) for t in texts[start:start + batch_size]], tok.pad_token_id,
                                  prm.device)
            values += torch.sigmoid(prm(input_ids=ids, attention_mask=mask).logits[:, 0].float()).tolist()
            bar.update(len(ids))
    return values


# --------------------------------------------------------------------------- generation


def generate(model: Any, tok: Any, prompts: Sequence[str], temperature: float, max_new_tokens: int,
             seed: int, batch_size: int) -> list[str]:
    """One completion per prompt (greedy when temperature is 0), decoded without special tokens."""
    return [text for text, _ in generate_ended(model, tok, prompts, temperature, max_new_tokens, seed, batch_size)]


@torch.no_grad()
def generate_ended(model: Any, tok: Any, prompts: Sequence[str], temperature: float, max_new_tokens: int,
                   seed: int, batch_size: int, what: str = "generate") -> list[tuple[str, bool]]:
    """(completion, whether it ended at EOS) per prompt; greedy when temperature is 0.

    Batches are left-padded; batch `i` samples under torch seed `seed + i`, so the output
    depends only on the prompts, the seed and the batch size. `what` names the work in the
    progress lines."""
    model.eval()
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} \
        if temperature > 0 else {"do_sample": False}
    out: list[tuple[str, bool]] = []
    with progress(len(prompts), phase_desc(what), unit="samples") as bar:
        for i, start in enumerate(range(0, len(prompts), batch_size)):
            enc = tok(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                      padding_side="left", add_special_tokens=False).to(model.device)
            torch.manual_seed(seed + i)
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id, **sampling)[:, enc["input_ids"].shape[1]:]
            ended = (ids == tok.eos_token_id).any(dim=1).tolist()
            out += zip(tok.batch_decode(ids, skip_special_tokens=True), ended, strict=True)
            bar.update(len(ended))
    return out


def to_steps(text: str, delimiter: str, is_terminal: Callable[[str], bool]) -> list[str]:
    """Generated text as steps (blank pieces dropped), cut after the first terminal step."""
    steps = []
    for step in text.split(delimiter):
        if not step.strip():
            continue
        steps.append(step)
        if is_terminal(step):
            break
    return steps


# --------------------------------------------------------------------------- helpers


def train_steps(model: Any, rows: Sequence[Any], loss_fn: Any, steps: int, batch_size: int, lr: float,
           seed: int) -> list[float]:
    """AdamW with linear warmup and cosine decay to 10%; batches walk seeded epoch permutations."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, _cosine(s, steps)))
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    losses = []
    with progress(steps, phase_desc("train"), unit="steps") as bar:
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
            bar.update(1, loss=f"{tail_mean(losses):.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
    model.eval()
    return losses


def _cosine(step: int, total: int) -> float:
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


def pad_right(seqs: Sequence[list[int]], pad_id: int,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


def encode(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def phase_seed(seed: int, phase: str) -> int:
    """A stable per-phase seed derived from the run seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{phase}".encode()).digest()[:4], "little")


def num_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def tail_mean(losses: Sequence[float], n: int = 20) -> float:
    tail = losses[-n:]
    return round(sum(tail) / len(tail), 5) if tail else 0.0


_PHASES: list[str] = []  # "label name" of the `timed` blocks running now, innermost last


def phase_desc(what: str) -> str:
    """`what`, prefixed with the running `timed` phase ("bootstrap sft train"), for progress lines."""
    return f"{_PHASES[-1]} {what}" if _PHASES else what


@contextmanager
def timed(timings: dict[str, float], name: str, label: str) -> Iterator[None]:
    """Adds the block's wall time to `timings[name]` and prints a `[label] name: Ns` line; the
    progress of the work inside (restmcts.progress) is named after the phase."""
    start = time.perf_counter()
    _PHASES.append(f"{label} {name}")
    try:
        yield
    finally:
        _PHASES.pop()
        timings[name] = round(time.perf_counter() - start, 2)
        print(f"[{label}] {name}: {timings[name]:.1f}s", flush=True)
