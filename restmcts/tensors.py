"""Tensor rules the engines and the learners share: padding token rows, and reading the PRM's value.

The PRM is a one-label sequence classifier: its value of a text is the sigmoid of the logit it
pools at the text's last token, a number in [0, 1]. Scoring (engines) and training (learners)
read it through `prm_value`, so both see the same number.

torch is imported inside the functions: importing this module is free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def pad(rows: Sequence[Sequence[int]], value: int, left: bool = False, device: Any = None) -> Any:
    """Integer rows as one [len(rows), longest] long tensor (on `device` when given), filled with
    `value` on the right (on the left when `left`)."""
    import torch

    if not rows:
        raise ValueError("pad: no rows to pad")
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        out[i, span] = torch.tensor(r, dtype=torch.long)
    return out if device is None else out.to(device)


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, left: bool = False,
              device: Any = None) -> tuple[Any, Any]:
    """Token rows as (input_ids, attention_mask): pad_id and 0 fill the padding, on the right or,
    when `left`, on the left."""
    return pad(rows, pad_id, left, device), pad([[1] * len(r) for r in rows], 0, left, device)


def prm_value(logits: Any) -> Any:
    """The PRM's value: sigmoid of the one-label classifier's logit, in float32.

    `logits` has the label on its last axis (the classifier's [batch, 1] output, or one text's
    [1]); the result drops that axis. Gradients flow through it (the learner's loss reads it)."""
    import torch

    if logits.shape[-1] != 1:
        raise ValueError(f"prm_value: the PRM must be a one-label classifier (num_labels=1); its logits have "
                         f"{logits.shape[-1]} labels on the last axis (shape {tuple(logits.shape)})")
    return torch.sigmoid(logits[..., 0].float())
