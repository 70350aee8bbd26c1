"""Policy learner: supervised fine-tuning on verified reasoning traces (ReST-MCTS*, Algorithm 1).

Data: the rows of traces.parquet files with `correct = True` (the driver's policy_data.parquet
holds only those already). One row becomes

    input_ids = tokens(PromptFormat.prompt(question)) + tokens(PromptFormat.solution(steps)) + [eos]
    labels    = [-100] * len(prompt tokens)           + the same solution tokens        + [eos]

so the loss (token-mean cross-entropy of next-token prediction) falls on the solution and its
end only. The prompt is tokenized with the tokenizer's special tokens (BOS where it adds one)
unless it came from a chat template, which writes them itself; the solution never gets them.
Rows longer than learners.max_seq_len keep their first max_seq_len tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from restmcts import replay
from restmcts.learners.engine import IGNORE_INDEX, Batch, Learner, require_replay
from restmcts.replay import Trace
from restmcts.tensors import pad, pad_batch


@dataclass(frozen=True)
class SFTExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens, else equal to input_ids


class PolicyLearner(Learner[Trace, SFTExample]):
    role = "policy"

    @classmethod
    def read_samples(cls, paths: Sequence[str]) -> list[Trace]:
        rows: list[Trace] = []
        for path in paths:
            require_replay(path)
            rows.extend(t for t in replay.read_traces(path) if t.correct)
        return rows

    @property
    def lr(self) -> float:
        return self.cfg.learners.policy_lr

    @property
    def epochs(self) -> int:
        return self.cfg.learners.policy_epochs

    def load_model(self, path: str) -> Any:
        from restmcts.checkpoints import load_policy

        return load_policy(path)

    def encode(self, sample: Trace) -> tuple[SFTExample, bool]:
        tok = self.tokenizer
        prompt = tok(self.fmt.prompt(sample.question), add_special_tokens=not self.fmt.chat_template).input_ids
        target = tok(self.fmt.solution(sample.steps), add_special_tokens=False).input_ids + [tok.eos_token_id]
        ids = prompt + target
        labels = [IGNORE_INDEX] * len(prompt) + target
        limit = self.cfg.learners.max_seq_len
        return SFTExample(ids[:limit], labels[:limit]), len(ids) > limit

    def collate(self, examples: Sequence[SFTExample]) -> Batch:
        ids, mask = pad_batch([e.input_ids for e in examples], self.tokenizer.pad_token_id)
        labels = pad([e.labels for e in examples], IGNORE_INDEX)
        return Batch({"input_ids": ids, "attention_mask": mask, "labels": labels},
                     samples=len(examples), tokens=int(mask.sum()))

    def loss(self, engine: Any, batch: Batch) -> torch.Tensor:
        t = batch.tensors
        logits = engine(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits
        return sft_loss(logits, t["labels"])


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions (0, not NaN, when there are none)."""
    shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    total = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (shift_labels != IGNORE_INDEX).sum().clamp(min=1)
