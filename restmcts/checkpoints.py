"""Loading and saving the policy and PRM checkpoints (transformers; a local path or a hub name).

The policy is a causal LM; the PRM is a one-label sequence classifier whose sigmoid output is
the value in [0, 1]. Both are ordinary Hugging Face folders (safetensors) that transformers,
vLLM, the engines and the learners load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save(model: Any, tokenizer: Any, path: str | Path) -> None:
    """Save a checkpoint folder (safetensors + tokenizer) that `from_pretrained` loads."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(path: str, dtype: str = "float32", device: str = "cpu") -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    _require(path, "model.policy")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, _DTYPES[dtype]))
    return model.to(device).eval()


def load_prm(path: str, dtype: str = "float32", device: str = "cpu") -> Any:
    """A one-label sequence classifier; its sigmoid output is the value in [0, 1]."""
    import torch
    from transformers import AutoModelForSequenceClassification

    _require(path, "model.prm")
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=getattr(torch, _DTYPES[dtype])
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    return model.to(device).eval()


def _require(path: str, key: str) -> None:
    """A local-looking path that does not exist fails here, naming the key, not deep in transformers."""
    p = Path(path)
    looks_local = path.startswith((".", "/", "~")) or p.parts[:1] == ("runs",) or len(p.parts) > 2
    if looks_local and not p.exists():
        raise FileNotFoundError(
            f"{key}: no checkpoint at {path!r}. Run `make bootstrap` (or jobs/bootstrap.py) to build the "
            f"embedded default, or set {key} to a local folder or a hub name."
        )


def read_weights(path: str) -> dict[str, Any]:
    """The tensors of a saved checkpoint folder (safetensors), without building the model."""
    from safetensors.torch import load_file

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in checkpoint folder {path!r}")
    weights: dict[str, Any] = {}
    for f in files:
        weights.update(load_file(str(f)))
    return weights
