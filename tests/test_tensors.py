"""The tensor rules engines and learners share: padding token rows, reading the PRM's value."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from restmcts.tensors import pad, pad_batch, prm_value


def test_pad_fills_the_right_or_the_left():
    rows = [[5, 6, 7], [8], []]
    assert pad(rows, 0).tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert pad(rows, -1, left=True).tolist() == [[5, 6, 7], [-1, -1, 8], [-1, -1, -1]]
    assert pad(rows, 0).dtype == torch.long
    with pytest.raises(ValueError, match="no rows"):
        pad([], 0)


def test_pad_batch_masks_exactly_the_padding():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=9, left=True)
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=9)
    assert ids.tolist() == [[5, 6, 7], [8, 9, 9]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_prm_value_is_the_sigmoid_of_the_one_logit():
    logits = torch.tensor([[0.0], [2.0], [-30.0]], dtype=torch.bfloat16, requires_grad=True)
    values = prm_value(logits)
    assert values.dtype == torch.float32 and values.shape == (3,)
    assert values.tolist() == pytest.approx([0.5, 1 / (1 + math.exp(-2.0)), 0.0], abs=1e-6)
    values.sum().backward()  # the learner's loss reads it: gradients reach the logits
    assert logits.grad is not None and float(logits.grad[0, 0]) == pytest.approx(0.25)
    assert float(prm_value(torch.tensor([1.0]))) == pytest.approx(1 / (1 + math.exp(-1.0)))  # one text


def test_prm_value_rejects_a_classifier_with_more_labels():
    with pytest.raises(ValueError, match="num_labels=1"):
        prm_value(torch.zeros(2, 2))


def test_importing_the_module_does_not_import_torch():
    code = "import sys, restmcts.tensors; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
