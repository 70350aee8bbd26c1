"""PRM learner: value regression on the (Q, p, v) samples inferred from search trees.

The PRM is a one-label sequence classifier read through a sigmoid, V(p) = sigmoid(logit) in
[0, 1] (`restmcts.tensors.prm_value`, the same reading the engines score with), on
`PromptFormat.render(question, steps)` (the text the PRM server scores). It is trained with mean
squared error to the inferred value v (ReST-MCTS*, the value model's regression objective on D_V). Rows longer than learners.max_seq_len keep their last
max_seq_len tokens: the classifier reads the final token, so the newest step is what must stay.

Every row of values.parquet must carry a finite v in [0, 1]; a file with any other value is
rejected whole, naming the file, before training starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from restmcts import replay
from restmcts.learners.engine import Batch, Learner, require_replay
from restmcts.replay import ValueRecord
from restmcts.tensors import pad_batch, prm_value


@dataclass(frozen=True)
class ValueExample:
    input_ids: list[int]
    value: float


class PRMLearner(Learner[ValueRecord, ValueExample]):
    role = "prm"

    @classmethod
    def read_samples(cls, paths: Sequence[str]) -> list[ValueRecord]:
        rows: list[ValueRecord] = []
        for path in paths:
            require_replay(path)
            records = replay.read_values(path)
            bad = [i for i, r in enumerate(records) if not (math.isfinite(r.value) and 0.0 <= r.value <= 1.0)]
            if bad:
                raise ValueError(
                    f"{path}: {len(bad)} of {len(records)} rows have a value that is not a finite number in "
                    f"[0, 1] (first: row {bad[0]}, value {records[bad[0]].value!r}); fix or remove this "
                    "file before training the PRM"
                )
            rows.extend(records)
        return rows

    @property
    def lr(self) -> float:
        return self.cfg.learners.prm_lr

    @property
    def epochs(self) -> int:
        return self.cfg.learners.prm_epochs

    def load_model(self, path: str) -> Any:
        from restmcts.checkpoints import load_prm

        return load_prm(path)

    def encode(self, sample: ValueRecord) -> tuple[ValueExample, bool]:
        text = self.fmt.render(sample.question, sample.steps)
        ids = self.tokenizer(text, add_special_tokens=not self.fmt.chat_template).input_ids
        limit = self.cfg.learners.max_seq_len
        return ValueExample(ids[-limit:], sample.value), len(ids) > limit

    def collate(self, examples: Sequence[ValueExample]) -> Batch:
        ids, mask = pad_batch([e.input_ids for e in examples], self.tokenizer.pad_token_id)
        values = torch.tensor([e.value for e in examples], dtype=torch.float32)
        return Batch({"input_ids": ids, "attention_mask": mask, "values": values},
                     samples=len(examples), tokens=int(mask.sum()))

    def loss(self, engine: Any, batch: Batch) -> torch.Tensor:
        t = batch.tensors
        logits = engine(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits
        return F.mse_loss(prm_value(logits), t["values"])
